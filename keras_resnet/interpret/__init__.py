"""Looking at a classifier's mistakes: for a single-label one its confusion matrix, precision,
recall and F1 per class, the pairs of classes it confuses most; for a multi-label one each
label's 2x2 table and precision-recall curve; for both the images with the largest loss beside
the Grad-CAM of what it predicted (the questions fastai's ``ClassificationInterpretation`` and
Ultralytics' confusion matrices answer).

The array functions (:func:`confusion_matrix`, :func:`per_class_table`, :func:`most_confused`,
:func:`top_losses`, :func:`label_table`, :func:`precision_recall_curve`,
:func:`label_top_losses`) take NumPy arrays; :func:`interpret` predicts a dataset split once and
writes CSV files and PNG figures (matplotlib's Agg renderer, no display) into a folder, each
written to a temporary name and renamed into place.

Example:
    >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
"""

from keras_resnet.interpret.classes import (confusion_matrix, most_confused, per_class_table,
                                            top_losses)
from keras_resnet.interpret.figures import plot_confusion_matrix
from keras_resnet.interpret.labels import label_table, label_top_losses, precision_recall_curve
from keras_resnet.interpret.write import interpret

__all__ = ["confusion_matrix", "interpret", "label_table", "label_top_losses", "most_confused",
           "per_class_table", "plot_confusion_matrix", "precision_recall_curve", "top_losses"]
