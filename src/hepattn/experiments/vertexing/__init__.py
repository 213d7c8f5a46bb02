"""Primary vertexing: a MaskFormer over the fitted tracks of an event, against ACTS's AMVF."""
