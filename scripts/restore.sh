#!/bin/sh
# Restore an assay registry from a directory made by scripts/backup.sh.
#
#   scripts/restore.sh SRC
#
# Stop every registry replica and worker first. The target is the deployment the ASSAY_*
# variables describe: an existing, empty or previous, PostgreSQL database (its tables are
# replaced) or SQLite file, and a bucket or directory. Blobs are copied, never deleted:
# restoring into a store that holds more does no harm (GC removes what nothing uses).
# Afterwards `assay scrub` re-hashes every blob and reports any the database misses.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 SRC" >&2; exit 2; }
src=$1
. "$(dirname "$0")/backup-env.sh"
[ -d "$src/blobs" ] || { echo "restore: $src has no blobs/ (not a backup)" >&2; exit 1; }
if [ -n "$PG_URL" ]; then
    [ -f "$src/assay.pgdump" ] || { echo "restore: $src has no assay.pgdump" >&2; exit 1; }
    pg_restore --clean --if-exists --no-owner --exit-on-error --single-transaction \
        --dbname "$PG_URL" "$src/assay.pgdump"
else
    [ -f "$src/assay.db" ] || { echo "restore: $src has no assay.db" >&2; exit 1; }
    mkdir -p "$(dirname "$SQLITE_DB")"
    cp "$src/assay.db" "$SQLITE_DB.restoring"
    rm -f "$SQLITE_DB-wal" "$SQLITE_DB-shm"  # the old file's journal must not be replayed
    mv "$SQLITE_DB.restoring" "$SQLITE_DB"
fi
rclone copy --quiet --checksum "$src/blobs" "$BLOBS"
echo "restore: done; run 'assay scrub' to check every blob"
