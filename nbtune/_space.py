"""Search spaces: declarative parameters, and ``params_fn`` callables seen through a recorder.

A CleanRL-style ``params_fn(trial) -> dict`` mixes sampled values (``trial.suggest_*``) and fixed
ones (``"total-timesteps": 100000``). nbtune needs the space in a declarative form so that it can
be stored with the study (a worker on another machine samples from it, the widget edits it):

* :class:`SearchSpace` is that form. It is itself a ``params_fn`` and converts to and from JSON.
* :func:`record_space` turns a ``params_fn`` into a :class:`SearchSpace` by calling it once with
  a recorder whose ``suggest_*`` return opaque placeholders: any use of a sampled value other than
  returning it (a condition, arithmetic, formatting) makes the space not declarative, and the
  ``params_fn`` then keeps running in its own process only.
* :class:`RecordingTrial` hands ``params_fn`` the real Optuna trial, and keeps the deprecated
  ``suggest_uniform``/``suggest_loguniform``/``suggest_discrete_uniform`` spellings of the
  examples of CleanRL's tuner documentation working without Optuna's deprecation warnings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from nbtune import _optuna
from nbtune._errors import ConfigError, NbtuneError

ParamsFn = Callable[[Any], Mapping[str, Any]]
_LITERALS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Param:
    """One sampled parameter.

    Attributes:
        name: Optuna's parameter name (usually the flag name).
        type: ``"float"``, ``"int"`` or ``"categorical"``.
        low: Lower bound (float and int).
        high: Upper bound, included (float and int).
        log: Sample in log space.
        step: Discretization step, or ``None``.
        choices: The values of a categorical parameter.
    """

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[CategoricalChoiceType, ...] | None = None

    def __post_init__(self) -> None:
        where = f"parameter {self.name!r}"
        if not self.name:
            raise ConfigError("a parameter needs a name")
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError(f"{where}: a categorical parameter needs at least one choice.")
            bad = [c for c in self.choices if not isinstance(c, _LITERALS)]
            if bad:
                raise ConfigError(
                    f"{where}: choices must be numbers, strings, booleans or None; got {bad!r}."
                )
            return
        if self.type not in ("float", "int"):
            raise ConfigError(
                f"{where}: type must be 'float', 'int' or 'categorical', got {self.type!r}."
            )
        if self.low is None or self.high is None:
            raise ConfigError(f"{where}: a {self.type} parameter needs low and high.")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ConfigError(f"{where}: low and high must be finite numbers.")
        if self.low > self.high:
            raise ConfigError(f"{where}: low ({self.low}) must not exceed high ({self.high}).")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: a log-scaled range needs low > 0, got low={self.low}.")
        if self.log and self.step is not None:
            raise ConfigError(f"{where}: log and step cannot be combined.")
        if self.step is not None and not self.step > 0:
            raise ConfigError(f"{where}: step must be positive, got {self.step}.")
        if self.type == "int" and (
            self.low != int(self.low)
            or self.high != int(self.high)
            or (self.step or 1) != int(self.step or 1)
        ):
            raise ConfigError(
                f"{where}: an int parameter needs whole numbers for low, high and step."
            )

    def check_value(self, value: Any) -> Any:
        """Return ``value`` as this parameter holds it, or refuse one it could never sample.

        Example:
            >>> Param("lr", "float", 1e-5, 1e-1, log=True).check_value(3e-4)
            0.0003
            >>> Param("lr", "float", 1e-5, 1e-1, log=True).check_value(-1)
            Traceback (most recent call last):
            ...
            nbtune._errors.ConfigError: parameter 'lr': -1 is outside its range [1e-05, 0.1] ...
        """
        where = f"parameter {self.name!r}"
        if self.type == "categorical":
            choices = list(self.choices or ())
            # 1 == True in Python: compare types too, as Optuna's choices do.
            if not any(type(value) is type(c) and value == c for c in choices):
                raise ConfigError(f"{where}: {value!r} must be one of its choices {choices}.")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {value!r} is not a number.")
        number = float(value)
        if not math.isfinite(number):
            raise ConfigError(f"{where}: {value!r} is not a finite number.")
        if self.type == "int" and number != int(number):
            raise ConfigError(f"{where}: {value!r} is not a whole number.")
        assert self.low is not None and self.high is not None
        if not self.low <= number <= self.high:
            scale = " (log scale)" if self.log else ""
            raise ConfigError(
                f"{where}: {value!r} is outside its range [{self.low:g}, {self.high:g}]{scale}."
            )
        return int(number) if self.type == "int" else number

    @property
    def distribution(self) -> BaseDistribution:
        """The Optuna distribution."""
        if self.type == "float":
            return FloatDistribution(
                float(self.low), float(self.high), log=self.log, step=self.step
            )  # type: ignore[arg-type]
        if self.type == "int":
            return IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )  # type: ignore[arg-type]
        return CategoricalDistribution(list(self.choices or ()))

    @classmethod
    def from_distribution(cls, name: str, dist: BaseDistribution) -> Param:
        """Build from an Optuna distribution."""
        if isinstance(dist, FloatDistribution):
            return cls(name, "float", dist.low, dist.high, dist.log, dist.step)
        if isinstance(dist, IntDistribution):
            return cls(
                name, "int", dist.low, dist.high, dist.log, None if dist.step == 1 else dist.step
            )
        if isinstance(dist, CategoricalDistribution):
            return cls(name, "categorical", choices=tuple(dist.choices))
        raise TypeError(f"unsupported distribution {dist!r}")

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this parameter on a trial."""
        return _optuna.suggest(trial, self.name, self.distribution)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: only the fields that apply."""
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices or ())}
        out: dict[str, Any] = {"type": self.type, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> Param:
        """Parse the JSON form (the inverse of :meth:`to_dict`), with clear errors."""
        unknown = set(data) - {"type", "low", "high", "log", "step", "choices", "name"}
        if unknown:
            raise ConfigError(f"parameter {name!r}: unknown field(s) {sorted(unknown)}.")
        kind = data.get("type")
        if kind == "categorical":
            return cls(
                data.get("name", name), "categorical", choices=tuple(data.get("choices") or ())
            )
        if kind not in ("float", "int"):
            raise ConfigError(
                f"parameter {name!r}: type must be 'float', 'int' or 'categorical', got {kind!r}."
            )
        try:
            low, high = float(data["low"]), float(data["high"])
        except KeyError as exc:
            raise ConfigError(f"parameter {name!r}: missing {exc.args[0]!r}.") from None
        except (TypeError, ValueError):
            raise ConfigError(f"parameter {name!r}: low and high must be numbers.") from None
        step = data.get("step")
        if kind == "int":
            low, high = _whole(name, low), _whole(name, high)  # type: ignore[assignment]
        return cls(
            data.get("name", name),
            kind,
            low,
            high,
            bool(data.get("log", False)),
            None if step is None else float(step),
        )


def _whole(name: str, x: float) -> float:
    if x != int(x):
        raise ConfigError(f"parameter {name!r}: an int parameter needs whole numbers, got {x}.")
    return x


class SearchSpace:
    """A declarative search space: sampled parameters and fixed values, keyed by flag name.

    A :class:`SearchSpace` is a ``params_fn``: pass it to :class:`~nbtune.Tuner` as such.

    Args:
        entries: ``{flag: Param | fixed value}`` in the order the flags are passed.

    Example:
        >>> space = SearchSpace.from_dict({
        ...     "learning-rate": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True},
        ...     "num-minibatches": {"type": "categorical", "choices": [1, 2, 4]},
        ...     "total-timesteps": 100000,
        ... })
        >>> import optuna
        >>> params = space(optuna.create_study().ask())
        >>> sorted(params)
        ['learning-rate', 'num-minibatches', 'total-timesteps']
        >>> params["total-timesteps"]
        100000
    """

    def __init__(self, entries: Mapping[str, Param | Any]) -> None:
        names: dict[str, str] = {}
        for flag, entry in entries.items():
            if not isinstance(flag, str) or not flag or flag != flag.strip():
                raise ConfigError(
                    f"search space: flag names must be non-empty strings, got {flag!r}."
                )
            if isinstance(entry, Param):
                if entry.name in names:
                    raise ConfigError(
                        f"search space: flags {names[entry.name]!r} and {flag!r} both sample "
                        f"parameter {entry.name!r}; give each parameter its own name."
                    )
                names[entry.name] = flag
            elif not _is_literal(entry):
                raise ConfigError(
                    f"search space: fixed value of {flag!r} must be a number, string, boolean, "
                    "None "
                    f"or a list of those; got {entry!r}."
                )
        self.entries: dict[str, Param | Any] = dict(entries)

    @property
    def params(self) -> dict[str, Param]:
        """The sampled parameters, by flag."""
        return {k: v for k, v in self.entries.items() if isinstance(v, Param)}

    @property
    def fixed(self) -> dict[str, Any]:
        """The fixed values, by flag."""
        return {k: v for k, v in self.entries.items() if not isinstance(v, Param)}

    def __call__(self, trial: Any) -> dict[str, Any]:
        """Sample every parameter on ``trial`` (an Optuna trial or recorder); return all flags."""
        out: dict[str, Any] = {}
        for flag, entry in self.entries.items():
            if isinstance(entry, Param):
                if isinstance(trial, (optuna.Trial, RecordingTrial)):
                    target = trial.optuna_trial if isinstance(trial, RecordingTrial) else trial
                    out[flag] = entry.suggest(target)
                    if isinstance(trial, RecordingTrial):
                        trial.distributions[entry.name] = entry.distribution
                else:  # a FixedTrial or a recorder: go through the public API
                    out[flag] = _suggest_public(trial, entry)
            else:
                out[flag] = entry
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"SearchSpace({self.to_dict()!r})"

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{flag: {"type": ...} | fixed value}`` (``name`` when it differs)."""
        out: dict[str, Any] = {}
        for flag, entry in self.entries.items():
            if isinstance(entry, Param):
                d = entry.to_dict()
                if entry.name != flag:
                    d["name"] = entry.name
                out[flag] = d
            else:
                out[flag] = list(entry) if isinstance(entry, tuple) else entry
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Parse the JSON/TOML form: a table with ``type`` is a parameter, anything else fixed."""
        entries: dict[str, Any] = {}
        for flag, value in data.items():
            if isinstance(value, Mapping):
                if "type" not in value:
                    raise ConfigError(
                        f"search space entry {flag!r} is a table without 'type': write "
                        "{type = 'float', low = ..., high = ...} for a sampled parameter."
                    )
                entries[flag] = Param.from_dict(flag, value)
            else:
                entries[flag] = value
        return cls(entries)


def _suggest_public(trial: Any, p: Param) -> Any:
    if p.type == "float":
        return trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
    if p.type == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))  # type: ignore[arg-type]
    return trial.suggest_categorical(p.name, list(p.choices or ()))


def _is_literal(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, _LITERALS) for v in value)
    return isinstance(value, _LITERALS)


# ------------------------------------------------------------------------- recording params_fn
class NotDeclarativeError(NbtuneError):
    """``params_fn`` used a sampled value in a way a declarative space cannot express."""


class _Placeholder:
    """What a recorder's ``suggest_*`` returns: any use but returning it is refused."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise NotDeclarativeError(
            f"params_fn computes with sampled parameter {self.name!r} (a condition, arithmetic "
            "or formatting), so its space is conditional or derived"
        )

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _refuse
    __rtruediv__ = __floordiv__ = __rfloordiv__ = __pow__ = __rpow__ = __mod__ = _refuse
    __neg__ = __pos__ = __abs__ = __int__ = __float__ = __index__ = __round__ = _refuse
    __str__ = __format__ = __len__ = __iter__ = __getitem__ = __contains__ = _refuse

    def __repr__(self) -> str:
        return f"<sampled {self.name}>"


class _SpaceRecorder:
    """A stand-in trial that records ``suggest_*`` calls without touching any study."""

    def __init__(self) -> None:
        self.params: dict[str, Param] = {}

    def _record(self, param: Param) -> _Placeholder:
        if param.name in self.params and self.params[param.name] != param:
            raise NotDeclarativeError(f"parameter {param.name!r} is suggested twice differently")
        self.params[param.name] = param
        return _Placeholder(param.name)

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> Any:
        return self._record(Param(name, "float", float(low), float(high), log, step))

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> Any:
        return self._record(Param(name, "int", low, high, log, None if step == 1 else step))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._record(Param(name, "categorical", choices=tuple(choices)))

    def suggest_uniform(self, name: str, low: float, high: float) -> Any:
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name: str, low: float, high: float) -> Any:
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name: str, low: float, high: float, q: float) -> Any:
        return self.suggest_float(name, low, high, step=q)

    def __getattr__(self, name: str) -> Any:
        raise NotDeclarativeError(
            f"params_fn uses trial.{name}, which a declarative space cannot record"
        )


def record_space(params_fn: ParamsFn) -> tuple[SearchSpace | None, str]:
    """Turn ``params_fn`` into a declarative :class:`SearchSpace` if it is one.

    Returns:
        ``(space, "")``, or ``(None, reason)`` when ``params_fn`` cannot be recorded (a
        conditional or derived space): it still runs in the process that has it.

    Example:
        >>> space, why = record_space(lambda t: {
        ...     "learning-rate": t.suggest_loguniform("learning-rate", 3e-4, 3e-3),
        ...     "num-envs": 16,
        ... })
        >>> space.to_dict()["learning-rate"]
        {'type': 'float', 'low': 0.0003, 'high': 0.003, 'log': True}
        >>> space.fixed
        {'num-envs': 16}
        >>> print(record_space(lambda t: {"x": 2 ** t.suggest_int("k", 1, 4)})[1])
        params_fn computes with sampled parameter 'k' (a condition, arithmetic or formatting), ...
    """
    if isinstance(params_fn, SearchSpace):
        return params_fn, ""
    recorder = _SpaceRecorder()
    try:
        result = params_fn(recorder)
        if not isinstance(result, Mapping):
            return None, f"params_fn returned {type(result).__name__}, not a dict"
        entries: dict[str, Any] = {}
        used: set[str] = set()
        for flag, value in result.items():
            if isinstance(value, _Placeholder):
                entries[flag] = recorder.params[value.name]
                used.add(value.name)
            elif _is_literal(value):
                entries[flag] = value
            else:
                return None, f"the value of {flag!r} is {type(value).__name__}, not a plain value"
        unused = set(recorder.params) - used
        if unused:
            return None, f"params_fn samples {sorted(unused)} without passing them as flags"
        return SearchSpace(entries), ""
    except NotDeclarativeError as exc:
        return None, str(exc)
    except Exception as exc:  # the function needs a real trial (e.g. trial.number arithmetic)
        return None, f"params_fn could not run on a recorder: {type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------- the real trial
class RecordingTrial:
    """An Optuna trial as ``params_fn`` sees it, recording each ``suggest_*`` call.

    Every attribute of the wrapped trial is available (``number``, ``set_user_attr``, ...).

    Args:
        trial: The trial to sample from.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> rec = RecordingTrial(study.ask())
        >>> rec.suggest_loguniform("learning-rate", 1e-4, 1e-2) > 0
        True
        >>> sorted(rec.distributions)
        ['learning-rate']
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self._trial = trial
        self.distributions: dict[str, BaseDistribution] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    @property
    def optuna_trial(self) -> optuna.Trial:
        """The Optuna trial this recorder samples on."""
        return self._trial

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """Sample a float, as :meth:`optuna.Trial.suggest_float`."""
        value = self._trial.suggest_float(name, low, high, step=step, log=log)
        self.distributions[name] = FloatDistribution(low, high, step=step, log=log)
        return value

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        """Sample an integer, as :meth:`optuna.Trial.suggest_int`."""
        value = self._trial.suggest_int(name, low, high, step=step, log=log)
        self.distributions[name] = IntDistribution(low, high, step=step, log=log)
        return value

    def suggest_categorical(
        self, name: str, choices: Sequence[CategoricalChoiceType]
    ) -> CategoricalChoiceType:
        """Sample one of ``choices``, as :meth:`optuna.Trial.suggest_categorical`."""
        value = self._trial.suggest_categorical(name, choices)
        self.distributions[name] = CategoricalDistribution(choices)
        return value

    def suggest_uniform(self, name: str, low: float, high: float) -> float:
        """Optuna 2's spelling of ``suggest_float(name, low, high)``, used by CleanRL's examples."""
        return self.suggest_float(name, low, high)

    def suggest_loguniform(self, name: str, low: float, high: float) -> float:
        """Optuna 2's spelling of ``suggest_float(name, low, high, log=True)``."""
        return self.suggest_float(name, low, high, log=True)

    def suggest_discrete_uniform(self, name: str, low: float, high: float, q: float) -> float:
        """Optuna 2's spelling of ``suggest_float(name, low, high, step=q)``."""
        return self.suggest_float(name, low, high, step=q)


def sample_params(
    params_fn: ParamsFn, trial: optuna.Trial
) -> tuple[dict[str, Any], RecordingTrial]:
    """Call ``params_fn`` on a recording view of ``trial`` and check what it returns.

    Returns:
        The parameters (flag name to value, in the order ``params_fn`` gave them) and the
        recording trial.

    Raises:
        TypeError: If ``params_fn`` does not return a dict with string keys.
    """
    recording = RecordingTrial(trial)
    params = params_fn(recording)
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params_fn must return a dict of flag name to value, got {type(params).__name__}."
        )
    bad = [k for k in params if not isinstance(k, str)]
    if bad:
        raise TypeError(f"params_fn returned non-string keys {bad!r}; use flag names as keys.")
    return dict(params), recording
