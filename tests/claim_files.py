"""Claim files as other workers leave them, for the claim, worker and status tests."""
import json
import os
import time


def forge(out, stem, *, age, host_tag="another-host", pid=12345, timeout=5.0, token="old"):
    """A claim as a worker on another machine leaves it, its heartbeat ``age`` seconds old."""
    path = out / "claims" / f"{stem}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(owner=f"node7:{pid}", host="node7", host_tag=host_tag, pid=pid, token=token,
                                    run="lsh 8 bits seed 0", run_id="x", timeout=timeout)) + "\n")
    t = time.time() - age
    os.utime(path, (t, t))
    return path
