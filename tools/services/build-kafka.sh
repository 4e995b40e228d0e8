#!/usr/bin/env bash
# Fetch Apache Kafka's broker jars from Maven Central once and cache them under ~/.cache/gridhub/.
# The jars are kafka-pom.xml's runtime dependencies (Kafka plus a log4j binding); later runs exit at once.
set -euo pipefail

KAFKA_VERSION="4.4.0"  # keep in step with <kafka.version> in kafka-pom.xml
CACHE_ROOT="${GRIDHUB_CACHE:-$HOME/.cache/gridhub}"
TARGET="$CACHE_ROOT/kafka-$KAFKA_VERSION"
POM="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka-pom.xml"

if [[ -f "$TARGET/libs/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
    echo "kafka $KAFKA_VERSION: cached at $TARGET"
    exit 0
fi

for tool in mvn java; do
    command -v "$tool" >/dev/null || { echo "build-kafka: '$tool' is required but not on PATH" >&2; exit 1; }
done
grep -q "<kafka.version>$KAFKA_VERSION</kafka.version>" "$POM" \
    || { echo "build-kafka: $POM does not pin Kafka $KAFKA_VERSION" >&2; exit 1; }

mkdir -p "$CACHE_ROOT"
# The staging directory sits beside the target so the final mv is a rename on one file system.
STAGE="$(mktemp -d "$CACHE_ROOT/.kafka-$KAFKA_VERSION.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT

echo "kafka $KAFKA_VERSION: fetching the broker's jars from Maven Central"
# Maven writes target/ next to the pom it runs, so it runs a copy inside the staging directory.
cp "$POM" "$STAGE/pom.xml"
mvn -B -q -Dstyle.color=never -f "$STAGE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$STAGE/libs"
rm -rf "$STAGE/pom.xml" "$STAGE/target"

chmod 755 "$STAGE"
# Another build may have finished first: its jars are as good as ours.
mv -T "$STAGE" "$TARGET" 2>/dev/null || [[ -f "$TARGET/libs/kafka_2.13-$KAFKA_VERSION.jar" ]]
echo "kafka $KAFKA_VERSION: cached at $TARGET ($(ls "$TARGET/libs" | wc -l) jars)"
