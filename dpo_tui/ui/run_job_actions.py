"""The jobs the runs overview and the monitor both start for a run: chat, round-two pairs, export,
evaluation and its results, stop and resume.

:class:`RunJobScreen` holds the one copy of these actions; each screen says which run they act on
(:meth:`RunJobScreen.job_run_id`, and :meth:`RunJobScreen.eval_run_ids` for the evaluation keys,
which on the runs screen may cover a selection) and its own bindings and ``check_action`` gating.
The export and pairs screens are imported when a key is pressed: neither screen's first paint waits
for them.
"""

from __future__ import annotations

from .run_actions import ask_stop, start_resume
from .screens.base import ConsoleScreen
from .screens.eval_dialog import open_eval, open_results


class RunJobScreen(ConsoleScreen):
    """A screen whose keys act on one run (the highlighted one, or the one the monitor follows)."""

    def job_run_id(self) -> str | None:
        """The run the keys act on, or None when there is none."""
        raise NotImplementedError

    def job_run_state(self) -> str:
        """That run's state, which words the stop question ("" when it is not known yet: no stop)."""
        raise NotImplementedError

    def eval_run_ids(self) -> list[str]:
        """The runs ``E`` evaluates and ``R`` shows: by default just :meth:`job_run_id`."""
        run_id = self.job_run_id()
        return [run_id] if run_id else []

    def action_chat_run(self) -> None:
        run_id = self.job_run_id()
        if run_id:
            self.console.open_chat(run_id)

    def action_pairs_from_run(self) -> None:
        from .screens.pairs import pairs_from_run

        run_id = self.job_run_id()
        if run_id:
            pairs_from_run(self, run_id)

    def action_export_run(self) -> None:
        from .screens.export_dialog import open_export

        run_id = self.job_run_id()
        if run_id:
            open_export(self, run_id)

    def action_evaluate(self) -> None:
        open_eval(self, self.eval_run_ids())

    def action_eval_results(self) -> None:
        open_results(self, self.eval_run_ids())

    def action_stop_run(self) -> None:
        run_id, state = self.job_run_id(), self.job_run_state()
        if run_id and state:
            ask_stop(self, run_id, state)

    def action_resume_run(self) -> None:
        run_id = self.job_run_id()
        if run_id:
            start_resume(self, run_id)
