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
# Upload sessions in flight are not backed up: clients restart them.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DEST" >&2; exit 2; }
dest=$1
. "$(dirname "$0")/backup-env.sh"
mkdir -p "$dest"
if [ -n "$PG_URL" ]; then
    pg_dump --format=custom --file "$dest/assay.pgdump.tmp" --dbname "$PG_URL"
    mv "$dest/assay.pgdump.tmp" "$dest/assay.pgdump"
    rm -f "$dest/assay.db"
else
    [ -f "$SQLITE_DB" ] || { echo "backup: no database at $SQLITE_DB" >&2; exit 1; }
    sqlite3 "$SQLITE_DB" ".backup '$dest/assay.db.tmp'"
    mv "$dest/assay.db.tmp" "$dest/assay.db"
    rm -f "$dest/assay.pgdump"
fi
# sync: the backup's blobs mirror the store (blobs GC removed go from the backup too).
rclone sync --quiet --checksum "$BLOBS" "$dest/blobs"
echo "backup: database and $(find "$dest/blobs" -type f | wc -l) blob(s) in $dest"
