#!/bin/sh
# Back up an assay registry into DEST (a new or previous backup directory), online.
#
#   scripts/backup.sh DEST
#
# Reads the same ASSAY_* variables as the registry. Order matters: the database is dumped
# first (one consistent snapshot: pg_dump, or SQLite's online .backup), then the blobs are
# copied. Blobs are immutable and named by digest, and every blob the snapshot refers to
# was committed before it, so the copy holds all of them, provided `assay gc` does not
# run meanwhile (it could delete a blob a manifest deleted after the dump still refers to).
# A previous backup in DEST is replaced only once the new one is complete.
# Upload sessions in flight are not backed up: clients restart them.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
dest=$1
. "$(dirname "$0")/backup-env.sh"
mkdir -p "$dest"
# The new database snapshot stays aside until every blob it may refer to has been copied:
# a backup that fails half-way leaves the previous one usable (copy adds, never deletes).
if [ -n "$PG_URL" ]; then
    dump="$dest/assay.pgdump"
    pg_dump --format=custom --file "$dump.tmp" --dbname "$PG_URL"
else
    dump="$dest/assay.db"
    [ -f "$SQLITE_DB" ] || { echo "backup: no database at $SQLITE_DB" >&2; exit 1; }
    case "$dest" in *"'"*) echo "backup: DEST may not contain a quote" >&2; exit 2 ;; esac
    sqlite3 "$SQLITE_DB" ".backup '$dump.tmp'"
fi
rclone copy --quiet --checksum "$BLOBS" "$dest/blobs"
# Only now replace the previous snapshot (and drop one of the other database's kind).
case "$dump" in *.pgdump) rm -f "$dest/assay.db" ;; *) rm -f "$dest/assay.pgdump" ;; esac
mv "$dump.tmp" "$dump"
# Then prune blobs the store no longer holds (collected by GC): the snapshot needs none.
rclone sync --quiet --checksum "$BLOBS" "$dest/blobs"
echo "backup: database and $(find "$dest/blobs" -type f | wc -l) blob(s) in $dest"
