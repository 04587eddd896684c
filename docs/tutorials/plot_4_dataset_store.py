"""
A data set into the store: interrupted, resumed, read back, and under torchrun
==============================================================================

:func:`~captum_smooth.explain_dataset` attributes every example of a data set and writes the
maps to disk as it goes, in shards (numpy files with SHA-256 checksums and an index), so that

* memory is bounded by one shard, whatever the size of the data set;
* a run that dies resumes where it stopped when called again with the same arguments;
* ``torchrun`` ranks split the shards between them and write into the same store, with the
  same numbers as one process (each batch's noise is seeded from its first example's index).

:class:`~captum_smooth.AttributionStore` reads a finished store back. This tutorial runs on
scikit-learn's bundled handwritten digits (8 x 8 pixels) and a small CNN trained on them in a
few seconds, so that the whole page, ``torchrun`` included, builds in under a minute.
"""

# %%
# The model and the data
# ----------------------
# ``train_digits_cnn`` trains the CNN deterministically from a seed (about 99 % test
# accuracy). We explain 256 test digits with AdaptGrad over the signed gradient (8 noisy copies
# each, data bounds ``[0, 1]``) for their true labels (``target="label"``, the default), in
# batches of 32 and shards of 64 examples: four shards. Every keyword that ``explain_dataset``
# does not know goes to ``method.attribute`` and into the settings the store keeps.

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch.utils.data import Dataset

from captum_smooth import AdaptGrad, AttributionStore, StoreError, explain_dataset
from captum_smooth.app.models.digits import load_digits_data, train_digits_cnn

digits = load_digits_data()
model, accuracy = train_digits_cnn(seed=0)
print(f"test accuracy: {accuracy:.3f}")

N = 256
x, y = digits.x_test[:N], digits.y_test[:N]
work = Path(tempfile.mkdtemp(prefix="captum-smooth-tutorial-"))
weights = work / "digits_cnn.pt"
torch.save(model.state_dict(), weights)  # for the torchrun workers below

settings = {
    "batch_size": 32,
    "shard_size": 64,
    "reduce_channels": "sum",
    "show_progress": False,
    "nt_samples": 8,
    "bounds": (0.0, 1.0),
    "abs": False,  # Saliency's signed gradient (passed through to it)
}

# %%
# An interrupted run
# ------------------
# To interrupt a run at a known place, the data come through a ``Dataset`` that fails when it
# reaches example 150, as a lost network disk would: the first two shards (examples 0-127) are
# finished and on disk, the third is not.


class Digits(Dataset):
    """The digits as ``(image, label)`` pairs; optionally failing at one index."""

    def __init__(self, images, labels, fail_at=None):
        self.images, self.labels, self.fail_at = images, labels, fail_at

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise OSError(f"the disk went away while reading example {i}")
        return self.images[i], self.labels[i]


out = work / "store"
try:
    explain_dataset(AdaptGrad(model), Digits(x, y, fail_at=150), out, **settings)
except OSError as exc:
    print("the run stopped:", exc)

finished = sorted(p.name for p in out.rglob("*.npy"))
print("shards on disk:", finished)
stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
try:
    AttributionStore(out)
except StoreError as exc:
    print("reading it now:", exc)

# %%
# The store is not readable yet (it has no index: only a finished run writes one), but the two
# finished shards are kept. Calling ``explain_dataset`` again with the same arguments resumes:
# it checks that the settings and the data of the finished shards are those of this call (a
# store of other settings or other data is refused with a ``StoreError`` naming the
# differences), computes only the missing shards and writes the index.

store = explain_dataset(AdaptGrad(model), Digits(x, y), out, **settings)
kept = [p.name for p, t in stamps.items() if p.stat().st_mtime_ns == t]
print("shards now:", sorted(p.name for p in out.rglob("*.npy")))
print("finished before and not written again:", sorted(kept))
assert len(kept) == len(stamps) == 4  # two shards, each with its targets file
print(store)

# %%
# Reading it back
# ---------------
# ``explain_dataset`` returns the store; any later process opens it with
# ``AttributionStore(path)``. It is a sequence of tensors in data order: ``store[i]`` one map,
# ``store[a:b]`` a stacked batch, iteration one shard in memory at a time; every shard is
# checked against its checksum when read (``verify=True`` checks them all at once). The labels
# explained and the settings of the run come with it.

store = AttributionStore(out, verify=True)
print(len(store), store.shape, store.dtype)
print("targets:", store.targets[:10].tolist())
print("method:", store.metadata["settings"]["method"])
maps = store[:10]

fig, axes = plt.subplots(2, 10, figsize=(10, 2.4), constrained_layout=True)
for i in range(10):
    axes[0, i].imshow(x[i, 0], cmap="gray_r")
    axes[0, i].set_title(f"label {int(store.targets[i])}", fontsize=8)
    top = maps[i].abs().max()
    axes[1, i].imshow(maps[i], cmap="RdBu_r", vmin=-top, vmax=top)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %%
# Top row: the first ten test digits; bottom row: their AdaptGrad maps read back from the store,
# the smoothed gradient of the label's logit (red: more ink on that pixel raises it, blue:
# lowers it; each map on its own symmetric scale). At 8 x 8 pixels the maps are coarse, and
# the gradient is not confined to the ink: it also says where ink *would* change the score,
# so blank pixels next to a stroke are coloured too.
#
# The same under torchrun
# -----------------------
# Under ``torch.distributed`` every rank calls ``explain_dataset`` with the same arguments: the
# unfinished shards are dealt to the ranks round-robin, each rank writes its own shards into the
# one store, and rank 0 writes the index after a barrier (the store must be on a file system
# the ranks share). The script below is what each of two ranks runs; the tutorial starts it with
# ``torchrun --nproc-per-node 2`` (as ``python -m torch.distributed.run``, the same program),
# the CPU's gloo backend, one thread per rank.

worker = work / "explain_digits.py"
worker.write_text(
    textwrap.dedent(
        f"""
        import sys
        import torch
        import torch.distributed as dist
        from captum_smooth import AdaptGrad, explain_dataset
        from captum_smooth.app.models.digits import DigitsCNN, load_digits_data

        dist.init_process_group("gloo")
        model = DigitsCNN()
        model.load_state_dict(torch.load(sys.argv[1]))
        model.eval()
        digits = load_digits_data()
        data = (digits.x_test[:{N}], digits.y_test[:{N}])
        store = explain_dataset(AdaptGrad(model), data, sys.argv[2], **{settings!r})
        print(f"rank {{dist.get_rank()}} of {{dist.get_world_size()}}: store of {{len(store)}}")
        dist.destroy_process_group()
        """
    )
)
print(worker.read_text())

env = {**os.environ, "OMP_NUM_THREADS": "1"}
# sphinx_gallery_start_ignore
# The site's build imports the checkout's captum_smooth, whatever is installed: so do the ranks.
checkout = str(Path(sys.modules["captum_smooth"].__file__).resolve().parents[1])
env["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, env.get("PYTHONPATH")]))
# sphinx_gallery_end_ignore
command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
run = subprocess.run(
    [*command, str(worker), str(weights), str(work / "store-torchrun")],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
)
print(run.stdout)
if run.returncode != 0:
    raise RuntimeError(f"torchrun failed:\n{run.stderr[-3000:]}")

# %%
# Both ranks returned the finished store of 256 maps. Rank 0 took shards 0 and 2, rank 1 shards
# 1 and 3, and neither knew the other's numbers: each batch's noise comes from the seed and the
# index of the batch's first example, not from the process that runs it. So the store written
# by two processes holds the same maps as the one written in one process, interrupted and
# resumed above:

parallel = AttributionStore(work / "store-torchrun", verify=True)
print("same settings:", parallel.metadata["settings"] == store.metadata["settings"])
print(f"largest difference between the two stores: {(parallel[:] - store[:]).abs().max():.1e}")
torch.testing.assert_close(parallel[:], store[:])
