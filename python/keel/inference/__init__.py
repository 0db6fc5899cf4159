"""Native inference: turn scikit-learn, LightGBM and XGBoost models into Keel predictors.

``keel.convert(model)`` reads a trained model's parameters into a *model record* (plain arrays under
the keys of ``keel._core.model_keys``), which the C++ core validates and compiles into a native
predictor: linear models, multilayer perceptrons, tree ensembles in one flat node layout, and
factorization recommenders, with optional scaling / one-hot / ordinal encoding in front (from a
scikit-learn ``Pipeline``). Predictors take numpy arrays, pandas DataFrames (columns matched by name)
and single rows, release the GIL, pickle, and round-trip through a versioned, checksummed binary
format (``to_bytes`` / ``load_predictor``).

The package: ``predictor`` (the Predictor wrapper), ``_convert`` (Pipelines taken apart, dispatch),
one importer per library (``_sklearn``, ``_lightgbm``, ``_xgboost``), ``_factorization`` and the
helpers they share (``_common``).
"""

from __future__ import annotations

from keel.inference._convert import convert, native_flavour
from keel.inference._factorization import FactorizationModel
from keel.inference.predictor import FLAVOUR, Predictor, load_predictor  # noqa: F401  (FLAVOUR: keel.inference.FLAVOUR)

__all__ = ["convert", "Predictor", "FactorizationModel", "load_predictor", "native_flavour"]

# The public names live here: pickles (Predictor.__reduce__ names load_predictor) and reprs keep
# saying keel.inference.X whichever file of the package defines X.
for _obj in (convert, native_flavour, FactorizationModel, Predictor, load_predictor):
    _obj.__module__ = __name__
del _obj
