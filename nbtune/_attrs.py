"""Names of the attributes nbtune stores with trials and studies.

The storage is the one source of truth: the scheduler writes these keys, and every reader (the
live study view, the widget, the CLI, ``Tuner.trials_dataframe``) reads them back. A study that
nbtune did not create (a CleanRL or plain Optuna study) simply lacks them.

Trial user attributes (JSON values):

* ``seeds``: ``list[int]``, the seeds of the trial's experiments, in order.
* ``raw_scores``: ``dict[env_id, list[float | None]]``, per environment the last-N mean of the
  metric for each seed (aligned with ``seeds``; ``None`` where that experiment has no score).
* ``normalized_scores``: same shape, normalized with the study's target scores.
* ``checkpoint_scores``: ``dict[str(step), dict[env_id, float]]``, the raw score of each
  environment of the step's seed at each reported step (with ``raw_scores`` of the earlier
  seeds this recomputes every intermediate value, e.g. under new target scores).
* ``experiments``: ``list[dict]``, one per experiment: ``env_id``, ``seed``, ``argv``,
  ``run_dir``, ``returncode``, ``seconds``, ``status`` (``"ok"``, ``"failed"``, ``"pruned"``,
  ``"stopped"``).
* ``script_sha256``: hash of the training script the trial ran.
* ``versions``: ``{"nbtune": ..., "optuna": ..., "interpreter": "Python 3.11.7"}``.
* ``fail_reason`` and ``stderr_tail``: why a failed trial failed, and the end of its stderr.
* ``nbtune:retry_of``: on a trial that repeats one whose process died, that trial's number.
* ``data_warnings``: ``list[str]``, parts of the experiments' event files that could not be read
  (a corrupt record, a partial one at the end); the score comes from the points read.
* ``validates_trial`` and ``tuning_score`` (trials of a validation study, set when the
  configuration is enqueued): the number of the tuning study's trial whose configuration this
  trial re-runs on fresh seeds, and that trial's value in the tuning study.
* ``stall_warnings``: ``list[str]``, one line per time an experiment wrote nothing (no output,
  no TensorBoard record) for ``stall_warning`` seconds while running, e.g. ``"EnvA seed 0: no new
  output or TensorBoard record for 10 min"``; it only warns (``experiment_timeout`` stops).

Trial system attributes:

* ``nbtune:heartbeat``: wall-clock time of the last heartbeat, for storages without Optuna's.
* ``nbtune:owner``: ``{"host", "pid", "since"}`` of the process running the trial (a restart on
  the same machine fails the trial at once when that process is gone).
* ``nbtune:fail_kind``: why a trial failed: ``"script"`` (the script crashed, logged no metric
  or timed out: counts as a finished trial), ``"interrupted"`` (Ctrl-C, SIGTERM, a stop request)
  or ``"stale"`` (its process died; the trial is retried).
* ``nbtune:reserved``: wall-clock time a blank trial was enqueued to reserve the budget (see
  :mod:`nbtune._budget`).
* ``nbtune:create_token``: a random token that makes a retried trial creation find the trial
  its lost first attempt committed (relational storages, see
  :class:`nbtune._storage.ResilientRDBStorage`).
* ``nbtune:forked_from``: the number of the parent study's trial that a re-scored fork's trial
  copies (see :func:`nbtune.fork_study`).

Study user attributes:

* ``nbtune:spec``: the stored study spec (JSON).
* ``nbtune:spec_history``: ``list`` of the specs a study had before it was continued with a
  changed definition (``override_spec``), oldest first.
* ``nbtune:spec_signature``: ``{"hmac": ..., "key": ...}``, the spec's signature with the key of
  the machine that stored it (see :mod:`nbtune._trust`).
* ``nbtune:total_trials``: the study's trial budget, shared by all its processes.
* ``nbtune:parent``: the name of the study that a re-scored fork was made from.
* ``nbtune:not_rescored``: in a fork, ``{parent trial number: why}`` for each finished trial
  of the parent that could not be re-scored exactly (it stays with the parent only).
* ``nbtune:validation``: on a tuning study, the name of the study that validates its best
  configurations on fresh seeds (see :mod:`nbtune._validation`).
* ``nbtune:validation_of``: on a validation study, ``{"study": name of the tuning study,
  "seeds": [the fresh seeds], "trials": [the validated trials' numbers, best first]}``.

Keys Optuna itself stores, which nbtune reads:

* ``failed_trial`` (trial system attribute): the id of the failed trial that a retry repeats.
* ``fixed_params`` (trial system attribute): the parameters of an enqueued trial.
* ``study:metric_names`` (study system attribute): the names of ``Study.set_metric_names``.
"""

from __future__ import annotations

SEEDS = "seeds"
RAW_SCORES = "raw_scores"
NORMALIZED_SCORES = "normalized_scores"
CHECKPOINT_SCORES = "checkpoint_scores"
EXPERIMENTS = "experiments"
SCRIPT_SHA256 = "script_sha256"
VERSIONS = "versions"
FAIL_REASON = "fail_reason"
STDERR_TAIL = "stderr_tail"
DATA_WARNINGS = "data_warnings"
VALIDATES_TRIAL = "validates_trial"
TUNING_SCORE = "tuning_score"
STALL_WARNINGS = "stall_warnings"

HEARTBEAT = "nbtune:heartbeat"
FAIL_KIND = "nbtune:fail_kind"
OWNER = "nbtune:owner"
RETRY_OF = "nbtune:retry_of"
RESERVED = "nbtune:reserved"
CREATE_TOKEN = "nbtune:create_token"
FORKED_FROM = "nbtune:forked_from"

STUDY_SPEC = "nbtune:spec"
STUDY_SPEC_HISTORY = "nbtune:spec_history"
SPEC_SIGNATURE = "nbtune:spec_signature"
TOTAL_TRIALS = "nbtune:total_trials"
PARENT = "nbtune:parent"
NOT_RESCORED = "nbtune:not_rescored"
VALIDATION_STUDY = "nbtune:validation"
VALIDATION_OF = "nbtune:validation_of"

OPTUNA_FAILED_TRIAL = "failed_trial"
OPTUNA_FIXED_PARAMS = "fixed_params"
OPTUNA_METRIC_NAMES = "study:metric_names"
