"""The scvi-tools registry and per-batch tensors, from the collection's own category lists.

scvi-tools identifies a batch, a label or a categorical covariate by an integer
code into a ``categorical_mapping`` saved with the model. An annshard
collection already stores one category list per categorical obs column, shared
by all shards (and only ever extended at its end by an append), so its codes
*are* such a mapping: they mean the same label in every shard and in every
later version of the collection. The registry is built from those lists, and a
batch's codes go to the model as they are stored, with no per-batch encoding
(unlike label encoders fitted on whatever values a query returns). The one
remapping is for labels of a semi-supervised model (SCANVI): its unlabeled
category must be the last code, and rows without a label become unlabeled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from annshard import AnnshardError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import pandas as pd

__all__ = ["SEMI_SUPERVISED", "CovariateError", "Covariates"]

SEMI_SUPERVISED = frozenset({"SCANVI"})
"""Models whose training steps take ``(all rows, labelled rows)`` pairs."""


class CovariateError(AnnshardError, ValueError):
    """An obs column cannot serve as the requested scvi-tools covariate (wrong kind, missing values)."""


@dataclass
class Covariates:
    """How the obs columns of a collection feed a scvi-tools model.

    Attributes
    ----------
    batch_key, labels_key
        The obs columns used as scvi-tools' batch and labels (``None``: one constant category).
    categorical_keys, continuous_keys
        Extra covariate columns.
    unlabeled_category
        The label of unlabeled cells (semi-supervised models).
    semi_supervised
        Whether labels get an unlabeled category at the end.
    batch_mapping, labels_mapping
        ``categorical_mapping`` of batch and labels (object arrays): code ``i`` means ``mapping[i]``.
    categorical_mappings
        The same for each extra categorical covariate.
    labels_lut
        Stored label code to model label code; its last entry is for rows without a label.
    """

    batch_key: str | None
    labels_key: str | None
    categorical_keys: tuple[str, ...]
    continuous_keys: tuple[str, ...]
    unlabeled_category: str
    semi_supervised: bool
    batch_mapping: np.ndarray
    labels_mapping: np.ndarray
    categorical_mappings: dict[str, np.ndarray] = field(default_factory=dict)
    labels_lut: np.ndarray | None = None

    @property
    def obs_columns(self) -> tuple[str, ...]:
        """Every obs column the loaders must yield, each once."""
        keys = (self.batch_key, self.labels_key, *self.categorical_keys, *self.continuous_keys)
        return tuple(dict.fromkeys(k for k in keys if k is not None))

    @property
    def unlabeled_code(self) -> int | None:
        """The model's code for unlabeled cells (semi-supervised models), else ``None``."""
        return len(self.labels_mapping) - 1 if self.semi_supervised else None

    @classmethod
    def read(
        cls,
        *,
        where: str,
        categories: dict[str, tuple[Any, ...]],
        column: Callable[[str], np.ndarray],
        batch_key: str | None,
        labels_key: str | None,
        categorical_keys: Sequence[str],
        continuous_keys: Sequence[str],
        unlabeled_category: str,
        semi_supervised: bool,
    ) -> Covariates:
        """Check the columns and build the mappings.

        Parameters
        ----------
        where
            The collection, for messages.
        categories
            Category lists of the categorical columns (:attr:`annshard.Loader.categories`).
        column
            Reads a whole column (codes for categoricals).

        Raises
        ------
        CovariateError
            If a categorical covariate is numeric, a continuous one is categorical or has NaN, or a
            batch / categorical covariate has rows without a value.
        """

        def categorical(role: str, key: str, *, allow_missing: bool = False) -> np.ndarray:
            if key not in categories:
                msg = f"{role} {key!r} of collection {where} is not a categorical obs column (scvi-tools needs categories); write the collection with it as strings or categories, or pass it as a continuous covariate"
                raise CovariateError(msg)
            missing = int((column(key) < 0).sum())
            if missing and not allow_missing:
                msg = f"{role} {key!r} of collection {where} has no value in {missing} rows; scvi-tools needs a category for every cell (fill them, e.g. with 'unknown', and rewrite the collection)"
                raise CovariateError(msg)
            return np.asarray(categories[key], dtype=object)

        if semi_supervised and labels_key is None:
            msg = "a semi-supervised model (SCANVI) needs labels_key, the obs column of the cell labels"
            raise CovariateError(msg)
        const = np.asarray([0], dtype=object)
        batch_mapping = const if batch_key is None else categorical("batch_key", batch_key)
        labels_lut = None
        if labels_key is None:
            labels_mapping = const
        elif semi_supervised:
            stored = categorical("labels_key", labels_key, allow_missing=True)
            known = [c for c in stored.tolist() if c != unlabeled_category]
            labels_mapping = np.asarray([*known, unlabeled_category], dtype=object)
            code = {c: i for i, c in enumerate(labels_mapping.tolist())}
            # stored code -> model code; the extra last entry serves code -1 (no label): unlabeled
            labels_lut = np.asarray([code[c] for c in stored.tolist()] + [len(known)], dtype=np.int64)
        else:
            labels_mapping = categorical("labels_key", labels_key)
        mappings = {k: categorical("categorical covariate", k) for k in categorical_keys}
        for k in continuous_keys:
            if k in categories:
                msg = f"continuous covariate {k!r} of collection {where} is categorical; pass it in categorical_covariate_keys"
                raise CovariateError(msg)
            values = column(k)
            if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
                msg = f"continuous covariate {k!r} of collection {where} has dtype {values.dtype}, not numbers"
                raise CovariateError(msg)
            bad = int(np.count_nonzero(~np.isfinite(values.astype(np.float64))))
            if bad:
                msg = f"continuous covariate {k!r} of collection {where} is NaN or infinite in {bad} rows; scvi-tools needs a value for every cell"
                raise CovariateError(msg)
        return cls(
            batch_key=batch_key,
            labels_key=labels_key,
            categorical_keys=tuple(categorical_keys),
            continuous_keys=tuple(continuous_keys),
            unlabeled_category=unlabeled_category,
            semi_supervised=semi_supervised,
            batch_mapping=batch_mapping,
            labels_mapping=labels_mapping,
            categorical_mappings=mappings,
            labels_lut=labels_lut,
        )

    def model_labels(self, codes: np.ndarray) -> np.ndarray:
        """Map stored label codes to model label codes."""
        codes = np.asarray(codes, dtype=np.int64)
        return codes if self.labels_lut is None else self.labels_lut[codes]

    def tensors(self, batch: Any) -> dict[str, Any]:
        """Return the scvi-tools tensors of one loader batch (``X`` as the loader made it, still sparse)."""
        import torch

        n = batch.X.shape[0]

        def codes(key: str | None) -> Any:
            if key is None:
                return torch.zeros((n, 1), dtype=torch.long)
            return batch.obs[key].long().reshape(n, 1)

        labels = codes(self.labels_key)
        if self.labels_lut is not None:
            labels = torch.from_numpy(self.labels_lut)[labels]
        out: dict[str, Any] = {
            "X": batch.X,
            "batch": codes(self.batch_key),
            "labels": labels,
            "ind_x": torch.as_tensor(batch.index).long().reshape(n, 1),
        }
        if self.categorical_keys:
            out["extra_categorical_covs"] = torch.cat([codes(k) for k in self.categorical_keys], dim=1)
        if self.continuous_keys:
            cols = [batch.obs[k].to(torch.float32).reshape(n, 1) for k in self.continuous_keys]
            out["extra_continuous_covs"] = torch.cat(cols, dim=1)
        return out

    def registry(
        self, *, model_name: str, n_obs: int, var_names: pd.Index, layer: str | None, scvi_version: str
    ) -> dict[str, Any]:
        """Return the registry scvi-tools models are built from (``SCVI(registry=...)``) and save with themselves."""
        n_vars = len(var_names)
        cat: dict[str, Any] = {"data_registry": {}, "state_registry": {}, "summary_stats": {}}
        cat["summary_stats"]["n_extra_categorical_covs"] = len(self.categorical_keys)
        if self.categorical_keys:
            cat["data_registry"] = {"attr_name": "obsm", "attr_key": "_scvi_extra_categorical_covs"}
            cat["state_registry"] = {
                "field_keys": list(self.categorical_keys),
                "mapping": dict(self.categorical_mappings),
                "n_cats_per_key": [len(self.categorical_mappings[k]) for k in self.categorical_keys],
            }
        cont: dict[str, Any] = {"data_registry": {}, "state_registry": {}, "summary_stats": {}}
        cont["summary_stats"]["n_extra_continuous_covs"] = len(self.continuous_keys)
        if self.continuous_keys:
            cont["data_registry"] = {"attr_name": "obsm", "attr_key": "_scvi_extra_continuous_covs"}
            cont["state_registry"] = {"columns": np.asarray(self.continuous_keys, dtype=object)}
        return {
            "scvi_version": scvi_version,
            "model_name": model_name,
            "setup_args": {
                "layer": layer,
                "batch_key": self.batch_key,
                "labels_key": self.labels_key,
                "size_factor_key": None,
                "categorical_covariate_keys": list(self.categorical_keys) or None,
                "continuous_covariate_keys": list(self.continuous_keys) or None,
                **({"unlabeled_category": self.unlabeled_category} if self.semi_supervised else {}),
            },
            "field_registries": {
                "X": {
                    "data_registry": {"attr_name": "X" if layer is None else "layers", "attr_key": layer},
                    "state_registry": {
                        "n_obs": n_obs,
                        "n_vars": n_vars,
                        "column_names": np.asarray(var_names.astype(str), dtype=object),
                    },
                    "summary_stats": {"n_vars": n_vars, "n_cells": n_obs},
                },
                "batch": {
                    "data_registry": {"attr_name": "obs", "attr_key": "_scvi_batch"},
                    "state_registry": {
                        "categorical_mapping": self.batch_mapping,
                        "original_key": self.batch_key or "_scvi_batch",
                    },
                    "summary_stats": {"n_batch": len(self.batch_mapping)},
                },
                "labels": {
                    "data_registry": {"attr_name": "obs", "attr_key": "_scvi_labels"},
                    "state_registry": {
                        "categorical_mapping": self.labels_mapping,
                        "original_key": self.labels_key or "_scvi_labels",
                        "unlabeled_category": self.unlabeled_category,
                    },
                    "summary_stats": {"n_labels": len(self.labels_mapping)},
                },
                "ind_x": {
                    "data_registry": {"attr_name": "obs", "attr_key": "_indices"},
                    "state_registry": {},
                    "summary_stats": {},
                },
                "size_factor": {"data_registry": {}, "state_registry": {}, "summary_stats": {}},
                "extra_categorical_covs": cat,
                "extra_continuous_covs": cont,
            },
            "setup_method_name": "setup_datamodule",
        }
