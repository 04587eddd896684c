"""Dataset-scale attribution: stream a data set through a method into a resumable store.

* :func:`explain_dataset`: attributions of every example, written shard by shard into an
  on-disk store; resumable after a crash; split over the ranks of ``torch.distributed``;
* :class:`AttributionStore`: read them back, example by example, with checksums;
* :mod:`captum_smooth.app.dataset_cli`: the ``captum-smooth explain-dataset`` subcommand.
"""

from .explain import batch_seed, explain_dataset
from .store import AttributionStore, StoreError

__all__ = ["AttributionStore", "StoreError", "batch_seed", "explain_dataset"]
