"""Pictures.  Every ``plot_*`` returns a matplotlib Figure (Agg, no window); callers save it.

The names below load their module on first use (``import cnnkit.visualize`` imports neither
matplotlib nor torch); ``dir(cnnkit.visualize)`` lists them and ``help()`` shows each one's docstring::

    plot_curves(history)                      accuracy and loss per epoch (``result.history``)
    plot_confusion_matrix(cm, classes)        a confusion matrix (``metrics["confusion_matrix"]``)
    plot_samples(image_set, n)                a grid of images with their labels
    plot_most_wrong(image_set, most_wrong(probs, labels, n))   the highest-loss images (fastai's top losses)
    plot_gradcam(image, class_map(model, x)[0])   where the model looked; plot_gradcam_grid for several
    plot_label_issues(images, rows)           images whose label the predictions doubt
    plot_filters(filter_weights(model))       first-layer filters; plot_feature_maps(feature_maps(...))
    plot_sobel(image)                         Sobel edges (the tutorials' filters)
    plot_reliability(probs, labels)           calibration
    plot_lr_find(result)                      the learning-rate range test
    plot_augment_preview(images, augment_cfg) what an augmentation does
    save_figure(fig, "out.png")               write any of them
"""

from __future__ import annotations

from typing import Any

# public name -> the module defining it (cnnkit.visualize.<module>); a function named like its module
# (gradcam.gradcam, sobel.sobel) is left out: importing the module would shadow it with the module
_LAZY = {
    "plot_curves": "curves",
    "plot_confusion_matrix": "confusion",
    "plot_samples": "samples",
    "most_wrong": "mostwrong",
    "plot_most_wrong": "mostwrong",
    "saliency": "gradcam",
    "class_map": "gradcam",
    "overlay": "gradcam",
    "plot_gradcam": "gradcam",
    "plot_gradcam_grid": "gradcam",
    "issue_thumbnails": "label_issues",
    "plot_label_issues": "label_issues",
    "filter_weights": "filters",
    "feature_maps": "filters",
    "plot_filters": "filters",
    "plot_feature_maps": "filters",
    "plot_sobel": "sobel",
    "plot_reliability": "reliability",
    "plot_lr_find": "lr_find",
    "plot_augment_preview": "augment_preview",
    "save_figure": "figures",
    "render_report": "report",
    "write_report": "report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(_LAZY)


__all__ = sorted(_LAZY)
