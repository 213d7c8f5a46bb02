"""``hepattn bench``: timing and memory of the shipped TrackML models as the number of hits grows.

``cases`` builds the model and a synthetic event, ``parts`` turns them into the timed callables,
``timing`` times them, ``flops`` counts the work analytically, ``run`` loops and reports, ``plot`` draws.
"""
