"""Run the same job from several threads at once, each on its own database connection."""

import threading

from django.db import connection


def race(workers: int, job) -> list:
    """Start `job(index)` in `workers` threads released together; return every outcome (an
    exception counts as an outcome, so a test can show what failed)."""
    barrier = threading.Barrier(workers)
    results, lock = [], threading.Lock()

    def run(index):
        try:
            barrier.wait()
            outcome = job(index)
        except Exception as error:
            outcome = error
        finally:
            connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
