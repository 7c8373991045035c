#!/usr/bin/env bash
# Checks that every repository path the Markdown docs name in backticks exists, so the docs
# cannot drift from the code silently. A path counts when it starts with a top-level folder of
# the repository (stack/, xdp-prog/, bench/, tests/, deploy/, scripts/, docs/, .ci/); names
# with placeholders (<stamp>, *, {a,b}) are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
while IFS= read -r doc; do
  while IFS= read -r path; do
    case "$path" in *'<'*|*'*'*|*'{'*|*'$'*) continue ;; esac
    clean=${path%%:*}          # `file.rs:12` names a line of file.rs
    [ -e "$clean" ] && continue
    [ -e "$(dirname "$doc")/$clean" ] && continue   # relative to the document's own folder
    echo "check-docs: $doc names \`$path\`, which does not exist" >&2
    fail=1
  done < <(grep -oE '`(stack|xdp-prog|bench|tests|deploy|scripts|docs|\.ci)/[^` ]*`' "$doc" | tr -d '`' | sort -u)
done < <(git ls-files '*.md')
# The repository stands alone: no file may cite the design notes kept beside it (outside the
# repository). The pattern is assembled so that this script does not match it itself.
shared_dir='\.\.''/shared/'; design_notes='DESIGN''\.md'
outside=$(git ls-files | xargs grep -lE "$design_notes|$shared_dir" 2>/dev/null || true)
if [ -n "$outside" ]; then
  echo "check-docs: these files cite notes kept outside the repository:" >&2
  echo "$outside" >&2
  fail=1
fi
[ "$fail" = 0 ] && echo "check-docs: ok ($(git ls-files '*.md' | wc -l) documents)"
exit "$fail"
