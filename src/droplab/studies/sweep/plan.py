"""A sweep's definition and its trials: the grid, the fixed options and the seeds
(``SweepSpec``, from ``--grid``/``--set``/``--seeds`` texts or a TOML file), expanded into
trials ``(id, config)`` validated against ``TrainConfig``.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field

from droplab.errors import DroplabError, UsageError

# config keys that hold one value per hidden layer; a single value applies to every layer
_PER_LAYER = ("hidden", "dropout")
# config keys that describe how a trial runs, not what it computes: not part of its identity
_EXECUTION_KEYS = ("threads",)

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# -- the sweep's definition --------------------------------------------------------------------


@dataclass
class SweepSpec:
    """What to sweep: ``grid`` (key -> values, in order), ``fixed`` (key -> value), ``seeds``;
    and how: ``trial_timeout`` (seconds a trial may run before it is stopped; None: no limit)."""

    grid: dict[str, list] = field(default_factory=dict)
    fixed: dict[str, object] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    trial_timeout: float | None = None


def parse_scalar(text: str):
    """``"0.5"`` -> 0.5, ``"3"`` -> 3, ``"true"`` -> True, ``"null"`` -> None, else the text;
    ``"0.2:0.5"`` -> ``(0.2, 0.5)`` (one value per layer)."""
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if any(not p.strip() for p in parts):
            raise UsageError(f"empty item in per-layer value {text!r}")
        return tuple(parse_scalar(p) for p in parts)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":  # "none" stays text (scheduler=none); see _none_for_optional
        return None
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"expected a finite number, got {text!r}")
        return value
    return text


def parse_values(key: str, text: str) -> list:
    """A grid's comma-separated values; ``a,b,...,z`` fills in the progression a, b, ..., z."""
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        raise UsageError(f"--grid {key}: empty value in {text!r}")
    values: list = []
    i = 0
    while i < len(items):
        if items[i] != "...":
            values.append(parse_scalar(items[i]))
            i += 1
            continue
        if len(values) < 2 or i + 1 >= len(items):
            raise UsageError(f"--grid {key}: '...' needs two values before it and one after")
        a, b, end = values[-2], values[-1], parse_scalar(items[i + 1])
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b, end)):
            raise UsageError(f"--grid {key}: '...' works on numbers only")
        step = b - a
        if step == 0 or (end - b) / step < 0:
            raise UsageError(f"--grid {key}: {a}, {b}, ..., {end} does not progress to {end}")
        n = (end - b) / step
        if abs(n - round(n)) > 1e-6:
            raise UsageError(f"--grid {key}: {end} is not reached from {a}, {b} in equal steps")
        whole = all(isinstance(v, int) for v in (a, b, end))
        for k in range(1, round(n) + 1):
            v = b + k * step
            values.append(int(v) if whole else round(v, 10))
        i += 2
    if len(set(map(repr, values))) != len(values):
        raise UsageError(f"--grid {key}: repeated values in {text!r}")
    return values


def _split_assignment(flag: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")  # --grid batch-size=... spells the flag's name
    if not sep or not _KEY.match(key):
        raise UsageError(
            f"{flag} expects KEY=VALUE (KEY a train option, e.g. batch_size), got {text!r}"
        )
    return key, value


def _from_toml(value):
    """A TOML value in a sweep file: lists inside a [grid] list are per-layer values."""
    return tuple(value) if isinstance(value, list) else value


def build_spec(
    file=None,
    grid: list[str] = (),
    fixed: list[str] = (),
    seeds: int | None = None,
    trial_timeout: float | None = None,
) -> SweepSpec:
    """The sweep ``file`` (TOML, if any), then ``grid`` (``--grid KEY=V1,V2``), ``fixed``
    (``--set KEY=VALUE``), ``seeds`` (``--seeds N``: seeds 0..N-1) and ``trial_timeout``
    (``--trial-timeout SECONDS``) on top of it."""
    spec = _read_file(file) if file else SweepSpec()
    if trial_timeout is not None:
        spec.trial_timeout = trial_timeout
    for text in grid or []:
        key, value = _split_assignment("--grid", text)
        spec.grid[key] = parse_values(key, value)
    for text in fixed or []:
        key, value = _split_assignment("--set", text)
        spec.fixed[key] = parse_scalar(value)
    if seeds is not None:
        spec.seeds = list(range(seeds))
    both = set(spec.grid) & set(spec.fixed)
    if both:
        raise UsageError(f"{', '.join(sorted(both))} is both swept (--grid) and fixed (--set)")
    if "seed" in spec.grid or "seed" in spec.fixed:
        raise UsageError("give seeds with --seeds N (seeds 0..N-1), not as a grid or fixed key")
    for key in _EXECUTION_KEYS:
        if key in spec.grid:
            raise UsageError(f"{key} is not swept: it is set per worker (--threads)")
        spec.fixed.pop(key, None)
    return spec


def _read_file(file) -> SweepSpec:
    import tomllib

    try:
        with open(file, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise UsageError(f"--file: cannot read {file}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--file {file}: not valid TOML: {e}") from None
    unknown = set(doc) - {"grid", "fixed", "seeds", "trial_timeout"}
    if unknown:
        raise UsageError(
            f"--file {file}: unknown table(s) {', '.join(sorted(unknown))} "
            "(expected [grid], [fixed], seeds, trial_timeout)"
        )
    spec = SweepSpec()
    for key, values in doc.get("grid", {}).items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"--file {file}: grid.{key} must be a non-empty list")
        spec.grid[key] = [_from_toml(v) for v in values]
    spec.fixed.update({k: _from_toml(v) for k, v in doc.get("fixed", {}).items()})
    if "seeds" in doc:
        spec.seeds = _seed_list(doc["seeds"], f"--file {file}: seeds")
    if "trial_timeout" in doc:
        value = doc["trial_timeout"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise UsageError(
                f"--file {file}: trial_timeout must be a number of seconds > 0, got {value!r}"
            )
        spec.trial_timeout = float(value)
    return spec


def _seed_list(value, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return list(value)
    raise UsageError(f"{where} must be a positive count or a list of integers, got {value!r}")


# -- from the definition to trials -------------------------------------------------------------


def _per_layer(config: dict, default_layers: int | None) -> dict:
    """A single width (``hidden``) or rate (``dropout``) applies to every hidden layer.

    The number of layers is that of whichever of the two is given per layer, else
    ``default_layers`` (the default network's); None (a custom trainer) leaves single values.
    """
    given = [v for k in _PER_LAYER if isinstance(v := config.get(k), (list, tuple))]
    n_layers = len(given[0]) if given else default_layers
    for key in _PER_LAYER:
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and n_layers:
            config[key] = (value,) * n_layers
        elif isinstance(value, (list, tuple)):
            config[key] = tuple(value)
    if "dropout" in config and isinstance(config["dropout"], tuple):
        config["dropout"] = tuple(
            float(v) if isinstance(v, int) and not isinstance(v, bool) else v
            for v in config["dropout"]
        )
    return config


def _default_config_class():
    try:
        from droplab.train import TrainConfig
    except ImportError as e:
        raise DroplabError(f"droplab.train is not available ({e})") from None
    return TrainConfig


def plan(spec: SweepSpec, config_class=None) -> list[tuple[str, dict]]:
    """Every trial as ``(id, config)``, seeds outermost (a first full curve comes early).

    With ``config_class`` (``TrainConfig``), each config is completed with the defaults and
    validated by ``config_class.from_dict``; a bad value is a :class:`UsageError` naming it.
    Without one (a custom trainer), the config is exactly the sweep's keys.
    """
    from droplab.studies.sweep.store import trial_id

    known = None
    defaults: dict = {}
    if config_class is not None:
        from dataclasses import fields

        known = {f.name for f in fields(config_class)}
        defaults = config_class().to_dict()
        unknown = sorted((set(spec.grid) | set(spec.fixed)) - known)
        if unknown:
            raise UsageError(
                f"unknown option(s) {', '.join(unknown)}; sweepable: "
                f"{', '.join(sorted(known - {'seed', *_EXECUTION_KEYS}))}"
            )
    keys = list(spec.grid)
    trials, seen = [], set()
    for seed in spec.seeds:
        for combo in itertools.product(*(spec.grid[k] for k in keys)):
            config = {**spec.fixed, **dict(zip(keys, combo))}
            if known is not None:
                config["seed"] = seed
                # "none" is None for a field that is not text (subset=none: all examples)
                config = {
                    k: None if v == "none" and not isinstance(defaults.get(k), str) else v
                    for k, v in config.items()
                }
                config = _per_layer(config, len(defaults.get("hidden") or ()))
                try:
                    config = config_class.from_dict({**defaults, **config}).to_dict()
                except (ValueError, TypeError) as e:
                    shown = describe(_jsonable(config), keys)
                    hint = ""
                    if "one rate per hidden layer" in str(e) and "dropout" not in config:
                        hint = "; set dropout too (--set dropout=0.5: one rate for every layer)"
                    raise UsageError(f"invalid trial ({shown}): {e}{hint}") from None
            else:
                config = _per_layer(config, None)
                config["seed"] = seed
            for key in _EXECUTION_KEYS:
                config.pop(key, None)
            config = _jsonable(config)
            tid = trial_id(config)
            if tid not in seen:  # e.g. dropout=0.5 and dropout=0.5:0.5
                seen.add(tid)
                trials.append((tid, config))
    return trials


def _jsonable(value):
    """Tuples as lists, recursively, so a config equals its JSON round trip."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def describe(config: dict, keys) -> str:
    def show(v):
        if isinstance(v, list) and v and all(x == v[0] for x in v):
            return show(v[0])
        if isinstance(v, list):
            return ":".join(show(x) for x in v)
        return f"{v:g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={show(config.get(k))}" for k in keys)
