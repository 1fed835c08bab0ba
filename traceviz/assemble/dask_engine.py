"""The export's tasks as one Dask graph, on a LocalCluster or the user's own cluster.

The tasks are ``export.split`` (one per file), ``export.analyse`` (one per
partition, after every split), ``export.number`` (after every analysis) and
``export.write`` (one per partition, after the numbering): the functions the
local engine calls, with the same arguments, so the dataset is the same.
They pass each other only small summaries; frames and tables go through
the work folder, which every worker must reach at the same path.

Without a scheduler a LocalCluster is started for the export and closed
after it: one single-threaded worker process per core, at most one per
partition (each partition's analysis holds the GIL for much of its time,
so processes, not threads).  With one, the export runs on that cluster
(``dask-scheduler`` on a machine, Coiled, dask-kubernetes...) unchanged.
"""

from __future__ import annotations

import logging
import os
import uuid

from traceviz.errors import InputError


def run(job, tasks, scheduler, progress) -> tuple:
    """(splits, analysed, numbered, written), as ``export.run_local`` returns them.

    ``job``: an ``export.Job``; ``tasks``: the export module, whose ``split``,
    ``analyse``, ``number`` and ``write`` are the graph's tasks; ``progress``:
    called with (stage, done, total)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(job.out, "--engine dask needs dask[distributed]: pip install 'traceviz[dask]'") from None
    if scheduler is not None and not isinstance(scheduler, str):
        return _graph(scheduler, job, tasks, progress)          # a Client the caller manages
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(scheduler, f"cannot reach the Dask scheduler ({exc})") from None
        with client:
            return _graph(client, job, tasks, progress)
    import dask
    workers = max(1, min(job.partitions, os.cpu_count() or 1))
    # Not daemonic: a task may start processes of its own (the payload tier may).  On the loopback
    # only, the scheduler's web server (dashboard, health) too, on a free port: nothing listens beyond
    # this machine, and a cluster already on 8787 is no conflict.
    with dask.config.set({"distributed.worker.daemon": False}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        return _graph(client, job, tasks, progress)


def _graph(client, job, tasks, progress) -> tuple:
    from distributed import as_completed

    n, k = len(job.files), job.partitions
    token = uuid.uuid4().hex[:12]
    splits = [client.submit(tasks.split, job, i, pure=False, key=f"traceviz-split-{i}-{token}")
              for i in range(n)]
    analysed = [client.submit(tasks.analyse, job, p, splits, pure=False, key=f"traceviz-analyse-{p}-{token}")
                for p in range(k)]
    numbered = client.submit(tasks.number, analysed, pure=False, key=f"traceviz-number-{token}")
    written = [client.submit(tasks.write, job, p, numbered, pure=False, key=f"traceviz-write-{p}-{token}")
               for p in range(k)]
    stage = {f.key: s for s, fs in (("split", splits), ("analyse", analysed), ("write", written)) for f in fs}
    total = {"split": n, "analyse": k, "write": k}
    done = dict.fromkeys(total, 0)
    for stage_name in total:
        progress(stage_name, 0, total[stage_name])
    for future in as_completed(splits + analysed + [numbered] + written):
        if future.status == "error":
            future.result()                  # raises the task's own error here
        s = stage.get(future.key)
        if s is not None:
            done[s] += 1
            progress(s, done[s], total[s])
    return client.gather(splits), client.gather(analysed), numbered.result(), client.gather(written)
