"""What a writer does first after taking a dataset's lock: tidy what a crashed writer left.

Only in a folder carrying gdl's marker (storage/ownership.py): temporary files of writes that
never finished (a full disk, a SIGKILL) are deleted, and a corrupt manifest.json is rewritten
from the newest intact versions/N.json. Shards a killed run finished are kept: the next run
reuses them (resume), and pruning deletes the ones no version needs.
"""
from __future__ import annotations

import logging

from storage.fs import clean_temp_files
from storage.manifest import repair_manifest
from storage.ownership import is_gdl_dataset

log = logging.getLogger(__name__)


def recover_after_crash(uri: str) -> dict:
    """Tidy `uri` (hold its lock). Returns what was done: temp files removed, version restored."""
    if not is_gdl_dataset(uri):
        return {"temp_files_removed": [], "manifest_restored_from": None}
    removed = clean_temp_files(uri)
    restored = repair_manifest(uri)
    if removed:
        log.warning("%s: removed %d temporary files an interrupted write left", uri, len(removed))
    if restored is not None:
        log.warning("%s: manifest.json was corrupt; restored version %d from versions/", uri, restored)
    return {"temp_files_removed": removed, "manifest_restored_from": restored}
