"""Where each training recipe of :mod:`keras_resnet.recipes` comes from (``SOURCES``: the
command, paper or measurement behind its values) and the ImageNet top-1 its source published
(``PUBLISHED_TOP1``).

Example:
    >>> SOURCES["cifar"]
    'He et al. 2015, §4.2'
"""

# Where each value comes from (fields not named keep the paper's, or mean "off").
_TV = ("torchvision blog command (2021-11-18): --batch-size 128 x 8 GPUs --lr 0.5 "
       "--lr-scheduler cosineannealinglr --lr-warmup-epochs 5 --lr-warmup-method linear "
       "--auto-augment ta_wide --epochs 600 --random-erase 0.1 --weight-decay 0.00002 "
       "--norm-weight-decay 0.0 --label-smoothing 0.1 --mixup-alpha 0.2 --cutmix-alpha 1.0 "
       "--train-crop-size 176 --model-ema --val-resize-size 232 --ra-sampler --ra-reps 4; "
       "train.py defaults (vision 4bf6c6e4): --momentum 0.9, --lr-warmup-decay 0.01, "
       "--model-ema-steps 32, --model-ema-decay 0.99998; biases decay (no --bias-weight-decay "
       "then); SGD's weight_decay is coupled L2")
_RSB = ("ResNet strikes back, Table 1: LAMB, cosine, 5 warm-up epochs, batch 2048, BCE, "
        "RandAugment 7/0.5 (A3: 6/0.5), CutMix 1.0, test crop 0.95, no EMA or erasing; "
        "A1 600 epochs lr 5e-3 wd 0.01 smoothing 0.1 stochastic depth 0.05 mixup 0.2 RA; "
        "A2 300 epochs lr 5e-3 wd 0.02 stochastic depth 0.05 mixup 0.1 RA; A3 100 epochs "
        "lr 8e-3 wd 0.02 mixup 0.1 train 160; timm train.py: sqrt lr scaling for LAMB, "
        "--warmup-lr 1e-5, --aug-repeats 3, no decay on biases and norms; CosineLRScheduler "
        "with warmup_prefix=False, lr_min 0, one cycle; Lamb's max_grad_norm 1.0")
_TV_SEGMENTATION = (
    "torchvision references/segmentation README: torchrun --nproc_per_node=8 train.py --lr 0.02 "
    "--dataset coco -b 4 --model deeplabv3_resnet50 --aux-loss; train.py: SGD momentum 0.9, "
    "weight decay 1e-4 on every parameter (coupled), PolynomialLR(power=0.9) per iteration, "
    "30 epochs, loss out + 0.5 x aux, crop 480 of a 520 base size scaled 0.5-2.0")
_TV_DETECTION = (
    "torchvision references/detection README: torchrun --nproc_per_node=8 train.py --dataset coco "
    "--model retinanet_resnet50_fpn --epochs 26 --lr-steps 16 22 --aspect-ratio-group-factor 3 "
    "--lr 0.01 (batch 2 per GPU: 16); train.py: SGD momentum 0.9, weight decay 1e-4 on every "
    "parameter (coupled), MultiStepLR gamma 0.1 per epoch; engine.py: LinearLR from 1/1000 over "
    "min(1000, iterations of epoch 0 - 1). Here as fractions of the run: milestones 16/26 and "
    "22/26, warm-up 1000 of 26 x 7,330 iterations; no plateau rule there (patience 26 epochs)")
_DETECTION_FROM_SCRATCH = (
    "torchvision's detection schedule (milestones 16/26 and 22/26 of the run after its linear "
    "warm-up) with Adam (Kingma & Ba 2015) at 1e-3 per 16 images, square-root scaled to other "
    "batches, no weight decay. torchvision's SGD 0.01 starts from an ImageNet backbone; from "
    "scratch on the digit boxes (RetinaNet on ResNet-18 at 128x128, 300 steps of 16, seed 0, "
    "validation split) SGD at 0.01 has no detection above 0.05 (mAP 0) where Adam at 1e-3 "
    "reaches mAP 0.074, and SGD at 0.04 diverges (this package's measurement)")
SOURCES = {"cifar": "He et al. 2015, §4.2", "imagenet": "He et al. 2015, §3.4",
           "torchvision_v2": _TV, "rsb_a1": _RSB, "rsb_a2": _RSB, "rsb_a3": _RSB,
           "torchvision_segmentation": _TV_SEGMENTATION, "torchvision_detection": _TV_DETECTION,
           "detection_from_scratch": _DETECTION_FROM_SCRATCH}
# ImageNet top-1 (%) of ResNet-50 with each recipe, as published, one 224 crop: the paper's
# from the authors' released model (24.7% error; Table 3 gives 77.15% with 10 crops), then
# torchvision's IMAGENET1K_V2 weights and RSB's Table 1.
PUBLISHED_TOP1 = {"cifar": None, "imagenet": 75.3, "torchvision_v2": 80.858, "rsb_a1": 80.4,
                  "rsb_a2": 79.8, "rsb_a3": 78.1, "torchvision_segmentation": None,
                  "torchvision_detection": None, "detection_from_scratch": None}
