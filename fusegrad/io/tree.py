"""Split a checkpoint object into named tensors plus a JSON description of everything else, and put it back together.

A checkpoint is a tree of dicts (any hashable scalar or tuple keys), lists, tuples, Tensors and plain values
(None, bool, int, float, str). Tensors become entries named by their dotted path (`model.fc.weight`,
`optim.state.0.exp_avg`), so a flat `state_dict()` keeps exactly its own key names; the rest is encoded as JSON
with small tagged objects where JSON alone would lose the type (tuples, non-string keys, NaN/inf, OrderedDict).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import fusegrad as fg

# tags of the JSON objects that stand for values JSON cannot express directly
_TENSOR, _TUPLE, _DICT, _ODICT, _FLOAT = "tensor", "tuple", "dict", "odict", "float"
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def flatten(obj: Any, root_name: str = "tensor") -> tuple[Any, dict[str, fg.Tensor]]:
    """(JSON-able tree, {entry name: Tensor}); raises TypeError for a value that is not a checkpoint value and
    ValueError for a container that contains itself. `root_name` names a Tensor saved on its own."""
    tensors: dict[str, fg.Tensor] = {}
    active: set[int] = set()

    def name_for(path: str) -> str:
        name, n = path or root_name, 0
        while name in tensors:  # two paths can spell the same dotted name ({"a.b": x, "a": {"b": y}})
            n += 1
            name = f"{path or root_name}#{n}"
        return name

    def join(path: str, part: Any) -> str:
        return f"{path}.{part}" if path else str(part)

    def enc(x: Any, path: str) -> Any:
        if isinstance(x, fg.Tensor):
            name = name_for(path)
            tensors[name] = x
            return {_TENSOR: name}
        if x is None or isinstance(x, (bool, int, str)):
            return x
        if isinstance(x, float):
            return float(x) if math.isfinite(x) else {_FLOAT: repr(float(x))}
        if isinstance(x, (dict, list, tuple)):
            if id(x) in active:
                raise ValueError(f"cannot save a container that contains itself (at {path or 'the top level'!r})")
            active.add(id(x))
            try:
                if isinstance(x, dict):
                    items = [[enc_key(k, path), enc(v, join(path, k))] for k, v in x.items()]
                    return {_ODICT if isinstance(x, OrderedDict) else _DICT: items}
                items = [enc(v, join(path, i)) for i, v in enumerate(x)]
                return items if isinstance(x, list) else {_TUPLE: items}
            finally:
                active.discard(id(x))
        hint = "; save its .state_dict() instead" if callable(getattr(x, "state_dict", None)) else ""
        raise TypeError(f"cannot save a value of type {type(x).__module__}.{type(x).__qualname__} at "
                        f"{path or 'the top level'!r}: checkpoints hold Tensors, None, bool, int, float, str and "
                        f"dicts/lists/tuples of them (never pickled objects){hint}")

    def enc_key(k: Any, path: str) -> Any:
        if isinstance(k, fg.Tensor) or not (k is None or isinstance(k, (bool, int, float, str, tuple))):
            raise TypeError(f"cannot save a dict key of type {type(k).__qualname__} at {path or 'the top level'!r}: "
                            "keys must be None, bool, int, float, str or tuples of them")
        return enc(k, path)

    return enc(obj, ""), tensors


def unflatten(tree: Any, tensors: dict[str, fg.Tensor]) -> Any:
    """Rebuild the object `flatten` described; raises ValueError when the description is malformed or refers to
    entries that do not exist or leaves entries unused."""
    used: set[str] = set()

    def dec(x: Any) -> Any:
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict) or len(x) != 1:
            raise ValueError(f"malformed checkpoint structure near {str(x)[:60]!r}")
        (tag, body), = x.items()
        if tag == _TENSOR and isinstance(body, str):
            if body not in tensors:
                raise ValueError(f"the checkpoint structure refers to tensor {body!r}, which the file does not hold")
            used.add(body)
            return tensors[body]
        if tag == _TUPLE and isinstance(body, list):
            return tuple(dec(v) for v in body)
        if tag in (_DICT, _ODICT) and isinstance(body, list) and all(isinstance(kv, list) and len(kv) == 2
                                                                        for kv in body):
            pairs = [(dec(k), dec(v)) for k, v in body]
            try:
                return OrderedDict(pairs) if tag == _ODICT else dict(pairs)
            except TypeError:  # a key that decodes to a list: only a damaged file says that
                raise ValueError("malformed checkpoint structure: unhashable dict key") from None
        if tag == _FLOAT and body in _NONFINITE:
            return _NONFINITE[body]
        raise ValueError(f"malformed checkpoint structure: unknown entry {tag!r}")

    out = dec(tree)
    if unused := sorted(set(tensors) - used):
        raise ValueError(f"the file holds tensors its checkpoint structure does not mention: {unused[:5]}")
    return out
