"""The lecture's five training flows, as `minicnn lecture FLOW` runs them.

    catalog.py   the flows as data: model, hyperparameters, the book's figures
    data.py      their images: the iterators over a split, or VGG16's features
    runner.py    running one: checkpoint after every epoch, resume, history and metrics

    run = resolve("augment", data="cats_and_dogs_small", out="runs/lecture/augment")
    metrics = run_flow(run, resume=True)
"""
from minicnn.flows.catalog import (CHECKPOINT, FINETUNE_FROM, FLOWS, LECTURE_AUGMENTATION,
                                   MODELS, SPLITS, TARGET_SIZE, Flow, Hyper, Run,
                                   augment_model, features_augment_model, features_model,
                                   finetune_model, scratch_model, unfreeze_from)
from minicnn.flows.data import Data, check_data, extract_features, save_npz
from minicnn.flows.runner import (RUN_STATE, Interrupted, cpu_model, read_state, resolve,
                                  run_flow, versions, write_checkpoint, write_json)

__all__ = ["CHECKPOINT", "FINETUNE_FROM", "FLOWS", "LECTURE_AUGMENTATION", "MODELS",
           "RUN_STATE", "SPLITS", "TARGET_SIZE", "Data", "Flow", "Hyper", "Interrupted", "Run",
           "augment_model", "check_data", "cpu_model", "extract_features",
           "features_augment_model", "features_model", "finetune_model", "read_state",
           "resolve", "run_flow", "save_npz", "scratch_model", "unfreeze_from", "versions",
           "write_checkpoint", "write_json"]
