"""Nipype's MultiProc plugin with workers that a cancelled run can end at once.

Nipype's :class:`~nipype.pipeline.plugins.multiproc.MultiProcPlugin` runs nodes in a
``ProcessPoolExecutor`` whose forked workers inherit the main process's Python SIGTERM handler.
That handler only runs between bytecodes (not inside HD-BET's or ITK's C++ code), and the
``KeyboardInterrupt`` it raises is caught by Nipype's ``run_node`` as an ordinary node failure, so a
worker went on with HD-BET for minutes after ``scancel`` while the main process sat in interpreter
shutdown joining the pool.  Here every worker starts through
:func:`latentbids.utils.processes.init_worker` (own process group, default SIGTERM action, dies with
its parent), so :func:`latentbids.utils.processes.terminate_tree` ends it within seconds, and a
task whose worker died is reported as a failed node, never as a traceback from a pool callback.
"""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from traceback import format_exception

from nipype.pipeline.plugins.multiproc import MultiProcPlugin

from latentbids.utils.processes import init_worker


class CancellableMultiProcPlugin(MultiProcPlugin):
    """MultiProc (same ``plugin_args``: ``n_procs``, ``memory_gb``, ``mp_context`` ...) whose
    workers are set up by :func:`~latentbids.utils.processes.init_worker`."""

    def __init__(self, plugin_args=None):
        super().__init__(plugin_args=plugin_args)
        # The parent made a pool with Nipype's initializer; it has started no process yet.
        self.pool.shutdown(wait=False)
        self.pool = ProcessPoolExecutor(
            max_workers=self.processors,
            initializer=init_worker,
            initargs=(self._cwd,),
            mp_context=mp.get_context(self.plugin_args.get("mp_context")),
        )

    def _async_callback(self, future):
        """Store the task's result; a task whose worker was killed becomes a failed node."""
        try:
            result = future.result()
        except BaseException as exc:  # noqa: BLE001 - BrokenProcessPool, CancelledError
            taskid = next((tid for tid, fut in list(self._task_obj.items()) if fut is future), None)
            if taskid is None:
                return
            result = {"result": None, "taskid": taskid,
                      "traceback": format_exception(type(exc), exc, exc.__traceback__)}
        self._taskresult[result["taskid"]] = result
