"""The only package that imports ``acts`` (pinned: pyacts 48.1), in and out as numpy/pandas.

The pyacts Python API changes between major versions; everything version specific stays here. The
algorithms are executed directly on a private ``WhiteBoard``, without a ``Sequencer``, so there is no FPE
monitor to abort a run and no per-event framework overhead.

- ``fatras``: the generic detector and Fatras (``FatrasBackend``).
- ``fitting``: smearing digitisation and the Kalman fitter on truth proto-tracks (``TrackFitting``).
- ``vertexing``: ACTS's vertex finders on fitted tracks (``find_vertices``).
"""

from hepattn.data.sim.acts_backend.fatras import FatrasBackend

__all__ = ["FatrasBackend"]
