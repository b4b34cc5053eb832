"""Editing the study's definition, for :class:`~nbtune.widgets.TunerWidget`.

The definition the panel shows (target scores, aggregation, search space, seeds) lives in three
places: the study's stored spec (read at start and after each move to a fork), the widget's
traits (set from code), and the panel's editors (:mod:`nbtune.widgets._editors`, their *Apply*
buttons). :class:`DefinitionEditor` keeps them in step, and is the one path from an edit to the
run controller: a target or aggregation edit re-scores every finished trial into a fork
(:meth:`nbtune.TuningSession.retarget`), a space edit applies to new trials
(:meth:`nbtune.TuningSession.respace`). A refused edit leaves the traits as they were.

The traits themselves stay on the widget (traitlets wants them, their validators and observers
on the class); its validators call the checks here (the core's rules, so a value the Tuner would
refuse is refused the same way), and its observers hand each change to the editor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import traitlets

from nbtune._attrs import PARENT
from nbtune._config import check_positive_int
from nbtune._errors import ConfigError
from nbtune._output import quiet_optuna
from nbtune._scoring import AGGREGATIONS, check_aggregation, check_target_scores
from nbtune._session import TuningSession
from nbtune._space import SearchSpace
from nbtune.widgets._live import LiveStudy
from nbtune.widgets._panel import Panel

if TYPE_CHECKING:  # the widget imports this module
    from nbtune.widgets._widget import TunerWidget


def checked_targets(value: Any) -> dict[str, list[float] | None]:
    """The ``targets`` trait's check: target scores as ``{env_id: [low, high] | None}``."""
    checked = _checked(check_target_scores, value)
    return {env: None if t is None else [t[0], t[1]] for env, t in checked.items()}


def checked_aggregation(value: Any) -> str:
    """The ``aggregation`` trait's check: one of the aggregations the Tuner takes."""
    return str(_checked(check_aggregation, value))


def checked_space(value: Any) -> dict[str, Any] | None:
    """The ``space`` trait's check: a search space in its dict form, normalised, or ``None``."""
    if value is None:
        return None
    try:
        return SearchSpace.from_dict(value).to_dict()
    except (ValueError, TypeError) as exc:
        raise traitlets.TraitError(f"space: {exc}") from None


def checked_count(name: str, value: int | None) -> int | None:
    """The ``num_trials`` and ``num_seeds`` check: a positive int, or ``None`` until known."""
    if value is not None:
        _checked(check_positive_int, name, value)
    return value


def _checked(check: Any, *args: Any) -> Any:
    """Run a core check; its refusal becomes the TraitError that traitlets expects."""
    try:
        return check(*args)
    except (ValueError, TypeError) as exc:
        raise traitlets.TraitError(str(exc)) from None


class DefinitionEditor:
    """Keeps the widget's definition traits, its editors and the run controller in step.

    Args:
        widget: The widget whose traits (``targets``, ``aggregation``, ``space``,
            ``num_seeds``, ``study_name``) hold the applied definition.
        panel: The panel whose editors show it.
        live: The study shown, whose stored spec is read.
        require_session: Returns the run controller, or raises when the widget only watches;
            its argument says what could not be done.
    """

    def __init__(
        self,
        widget: TunerWidget,
        panel: Panel,
        live: LiveStudy,
        require_session: Callable[[str], TuningSession],
    ) -> None:
        self._widget = widget
        self._panel = panel
        self._live = live
        self._require_session = require_session
        self._syncing = False  # set while the widget itself sets traits (no re-apply)

    @contextlib.contextmanager
    def syncing(self) -> Iterator[None]:
        """Traits set inside are not applied: they come from the study, or undo a refused edit."""
        previous = self._syncing
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = previous

    def on_scoring_change(self, change: Any) -> None:
        """Apply a change of ``targets`` or ``aggregation``; undo it if it is refused."""
        if self._syncing:
            return
        widget = self._widget
        try:
            self._rescore(widget.targets, widget.aggregation)
        except Exception:
            with self.syncing():
                widget.set_trait(change["name"], change["old"])
            raise

    def on_space_change(self, change: Any) -> None:
        """Apply a change of ``space``; undo it if it is refused."""
        if self._syncing:
            return
        try:
            self._respace(change["new"])
        except Exception:
            with self.syncing():
                self._widget.space = change["old"]
            raise

    def _rescore(self, targets: dict[str, list[float] | None], aggregation: str) -> None:
        with quiet_optuna():  # "[I ...] A new study created" would print into the cell
            self._require_session("change the targets").retarget(targets, aggregation)

    def _respace(self, space: dict[str, Any] | None) -> None:
        if space is None:
            raise ConfigError("space: give a search space (a dict, as SearchSpace.to_dict()).")
        self._require_session("change the search space").respace(space)

    def apply_targets(self, targets: dict[str, list[float] | None], aggregation: str) -> str:
        """The targets editor's *Apply*: re-score into a fork; return what happened."""
        widget = self._widget
        if targets == widget.targets and aggregation == widget.aggregation:
            return "unchanged"
        before = widget.study_name
        old = (widget.targets, widget.aggregation)
        try:
            with self.syncing():  # both at once: one fork
                widget.targets = targets
                widget.aggregation = aggregation
        except traitlets.TraitError as exc:
            with self.syncing():
                widget.targets, widget.aggregation = old
            raise ConfigError(str(exc)) from None
        try:
            self._rescore(widget.targets, widget.aggregation)
        except Exception:
            with self.syncing():
                widget.targets, widget.aggregation = old
            raise
        return f"re-scored every finished trial of {before!r} into {widget.study_name!r}"

    def apply_space(self, space: SearchSpace) -> str:
        """The space editor's *Apply*: apply to new trials; return what happened."""
        if space.to_dict() == self._widget.space:
            return "unchanged"
        try:
            self._widget.space = space.to_dict()
        except traitlets.TraitError as exc:
            raise ConfigError(str(exc)) from None
        return "applied to new trials"

    def read_spec(self) -> None:
        """Set the traits and editors from the study's stored spec (call while syncing)."""
        widget = self._widget
        view = self._live.view
        spec = view.spec or {}
        widget.study_name = view.study_name
        targets = spec.get("targets")
        if isinstance(targets, Mapping) and targets:
            with contextlib.suppress(traitlets.TraitError):
                widget.targets = dict(targets)
        if spec.get("aggregation") in AGGREGATIONS:
            widget.aggregation = spec["aggregation"]
        space = spec.get("space")
        tuner = widget.tuner
        if tuner is not None and tuner.config.space is not None:
            space = tuner.config.space.to_dict()  # the space as this process passes its flags
        widget.space = space if isinstance(space, Mapping) else None
        seeds = spec.get("num_seeds")
        if isinstance(seeds, int) and seeds >= 1:
            widget.num_seeds = seeds
        self._panel.draw_definition(
            view=view,
            targets=widget.targets,
            aggregation=widget.aggregation,
            space=widget.space,
            space_note=spec.get("space_note") or "",
            read_only=widget.session is None,
            parent=view.user_attrs.get(PARENT),
        )
