"""Layer 6: what the commands do beyond one library call.

``train`` (a run with its pictures, metrics and report; ``lr-find``'s folder), ``explain``
(Sobel, filters, feature maps, Grad-CAM pictures) and ``inspect`` (the dataset report printed and
saved).  ``cnnkit.cli`` parses flags and calls one function of these or of a lower layer.
"""
