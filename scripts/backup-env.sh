# Sourced by backup.sh and restore.sh: where this deployment keeps its state, taken from
# the same ASSAY_* variables the registry reads (see README "Configuration").
#   PG_URL       libpq URL of the PostgreSQL database, or empty for SQLite
#   SQLITE_DB    the SQLite file (when PG_URL is empty)
#   BLOBS        rclone path of the committed blobs: ":s3:..." or a local directory
# S3 credentials go to rclone through its environment (an on-the-fly ":s3:" remote), so
# nothing is written to an rclone config file.
data_dir=${ASSAY_DATA_DIR:-./data}
db_url=${ASSAY_DATABASE_URL:-}
PG_URL=""
SQLITE_DB="$data_dir/assay.db"
case "$db_url" in
    postgres*) PG_URL=$(printf '%s' "$db_url" | sed 's|^postgres[a-z]*+[a-z0-9]*://|postgresql://|') ;;
    sqlite:///*) SQLITE_DB=${db_url#sqlite:///} ;;
    "") ;;
    *) echo "backup: unsupported ASSAY_DATABASE_URL: $db_url" >&2; exit 2 ;;
esac
if [ "${ASSAY_STORAGE:-filesystem}" = s3 ]; then
    export RCLONE_S3_PROVIDER=Other
    export RCLONE_S3_ENV_AUTH=true  # ASSAY_S3_* below, else the usual AWS sources
    [ -n "${ASSAY_S3_ACCESS_KEY_ID:-}" ] && export AWS_ACCESS_KEY_ID="$ASSAY_S3_ACCESS_KEY_ID"
    [ -n "${ASSAY_S3_SECRET_ACCESS_KEY:-}" ] && export AWS_SECRET_ACCESS_KEY="$ASSAY_S3_SECRET_ACCESS_KEY"
    export RCLONE_S3_REGION="${ASSAY_S3_REGION:-us-east-1}"
    [ -n "${ASSAY_S3_ENDPOINT_URL:-}" ] && export RCLONE_S3_ENDPOINT="$ASSAY_S3_ENDPOINT_URL"
    export RCLONE_S3_FORCE_PATH_STYLE=true
    # rclone's S3 SDK cannot load AWS_CA_BUNDLE with rclone's own HTTP transport (it
    # fails even for http:// endpoints): hand the bundle to rclone itself instead.
    if [ -n "${AWS_CA_BUNDLE:-}" ]; then
        export RCLONE_CA_CERT="$AWS_CA_BUNDLE"
        unset AWS_CA_BUNDLE
    fi
    # The key prefix as the registry uses it: slashes trimmed, then one "/" (storage/s3.py).
    prefix=${ASSAY_S3_PREFIX:-}
    while [ "${prefix#/}" != "$prefix" ]; do prefix=${prefix#/}; done
    while [ "${prefix%/}" != "$prefix" ]; do prefix=${prefix%/}; done
    [ -z "$prefix" ] || prefix="$prefix/"
    BLOBS=":s3:${ASSAY_S3_BUCKET:-assay}/${prefix}blobs"
else
    BLOBS="${ASSAY_STORAGE_DIR:-$data_dir/storage}/blobs"
fi
