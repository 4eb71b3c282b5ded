#!/usr/bin/env bash
# Build, tag, list and push every image of this project (CPU and GPU variants).
#
#   ./build.sh build [FAMILY...] [--gpu] [--serve|--full]
#                                                        build the base layers they need, then the families:
#                                                        each family's full image and, CPU only, its serve-only
#                                                        image (Dockerfile.serve: on byoc-base, no framework)
#                                                        --serve: the serve-only images only; --full: no serve-only
#   ./build.sh push  [FAMILY...] [--gpu] [--serve] --registry URI
#                                                        push to any registry (docker login, or
#                                                        REGISTRY_USERNAME/REGISTRY_PASSWORD in the env);
#                                                        --serve: the serve-only images instead
#   ./build.sh push  [FAMILY...] [--gpu] [--serve] --ecr [--region R] [--account A]
#                                                        push to Amazon ECR: repositories created if missing,
#                                                        login token from boto3 ecr.get_authorization_token
#   ./build.sh list                                      images, tags, sizes and git revisions
#   ./build.sh families                                  the family names this checkout has
#   ./build.sh lock [--all] [--check]                    relock the Python (tools/lock.py) and Debian
#                                                        packages (containers/base/debian/*.lock);
#                                                        --check: offline, fail when a lock is stale
#   ./build.sh sbom [IMAGE...] [--out DIR]               CycloneDX JSON per image (default: every built one)
#   ./build.sh audit [LOCK...]                           pip-audit of the locked Python packages
#                                                        (exit 3: the advisory service is unreachable)
#
# Tags: byoc-<family>:<version>-<cpu|gpu> and byoc-<family>:latest-<cpu|gpu>; <version> is in ./VERSION.
# Serve-only images (mxnet-mf, fm, ncf-tf, gluon-cnn; CPU): byoc-<family>:<version>-cpu-serve and
# byoc-<family>:latest-cpu-serve, in the family's repository.
# BASE_IMAGE picks the OS image (default debian:bookworm-slim); where it cannot be pulled, one is
# bootstrapped from Debian's packages with debootstrap.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VERSION=$(cat VERSION)
LICENSES=Apache-2.0  # ./LICENSE
PUBLIC_BASE=debian:bookworm-slim
BOOTSTRAPPED_BASE=byoc/debian:bookworm
export DOCKER_BUILDKIT=0  # classic builder: BuildKit/buildx may be unavailable

die() { echo "build.sh: $*" >&2; exit 1; }
say() { echo "build.sh: $*" >&2; }

# Base layers, built from containers/base/Dockerfile with FRAMEWORK=<none|mxnet|tensorflow>.
declare -A FRAMEWORK_OF_BASE=([base]=none [mxnet]=mxnet [tensorflow]=tensorflow)

family_dir() {  # product families live in containers/, test families in tests/families/
  local name=$1
  if [[ -n ${FRAMEWORK_OF_BASE[$name]:-} ]]; then echo "containers/base"
  elif [[ -f containers/$name/Dockerfile ]]; then echo "containers/$name"
  elif [[ $name == test-* && -f tests/families/${name#test-}/Dockerfile ]]; then echo "tests/families/${name#test-}"
  else return 1; fi
}

product_families() { for d in containers/*/Dockerfile; do d=${d%/Dockerfile}; d=${d#containers/}; [[ $d == base ]] || echo "$d"; done; }
test_families() { for d in tests/families/*/Dockerfile; do [[ -f $d ]] || continue; d=${d%/Dockerfile}; echo "test-${d#tests/families/}"; done; }
all_names() { echo base mxnet tensorflow; product_families; test_families; }

parent_of() {  # the base layer a family builds on, read from its Dockerfile's FRAMEWORK_IMAGE default
  local dir=$1 dockerfile=${2:-Dockerfile}
  sed -n 's/^ARG FRAMEWORK_IMAGE=byoc-\([a-z-]*\):.*/\1/p' "$dir/$dockerfile" | head -1
}

check_docker() {
  command -v docker >/dev/null || die "docker is not installed (Debian: apt-get install -y docker.io)"
  docker info >/dev/null 2>&1 || die "the docker daemon is not answering (start it: dockerd &, or systemctl start docker)"
}

resolve_base_image() {
  if [[ -n ${BASE_IMAGE:-} ]]; then echo "$BASE_IMAGE"; return; fi
  if docker image inspect "$PUBLIC_BASE" >/dev/null 2>&1 || docker pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
    echo "$PUBLIC_BASE"; return
  fi
  if ! docker image inspect "$BOOTSTRAPPED_BASE" >/dev/null 2>&1; then
    say "$PUBLIC_BASE cannot be pulled; bootstrapping $BOOTSTRAPPED_BASE from Debian packages"
    bash containers/base/bootstrap-debian.sh "$BOOTSTRAPPED_BASE" >&2
  fi
  echo "$BOOTSTRAPPED_BASE"
}

stage_ca_bundle() {  # pip inside the builder stage must trust this network's TLS; never reaches a final stage
  local dir=$1 bundle
  for bundle in "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [[ -n $bundle && -s $bundle ]]; then cp "$bundle" "$dir/ca-bundle.crt"; return; fi
  done
  rm -f "$dir/ca-bundle.crt"
}

image_name() { echo "byoc-$1"; }

provenance() {  # sets LABELS: the OCI labels every image carries (revision: the commit; -dirty if it differs)
  local revision created source
  if revision=$(git rev-parse HEAD 2>/dev/null); then
    # Only what goes into images counts: test output elsewhere in the tree does not make a build dirty.
    if [[ -n $(git status --porcelain -- containers tests/families build.sh VERSION 2>/dev/null) ]]; then
      revision+="-dirty"; created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    else
      # The commit's time, not the clock's: rebuilding a commit gives the same labels (and layer cache).
      created=$(TZ=UTC git show -s --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ HEAD)
    fi
    source=${BYOC_SOURCE_URL:-$(git remote get-url origin 2>/dev/null || echo "file://$ROOT")}
  else
    revision=unknown; created=$(date -u +%Y-%m-%dT%H:%M:%SZ); source=${BYOC_SOURCE_URL:-file://$ROOT}
  fi
  LABELS=(--label "org.opencontainers.image.source=$source" --label "org.opencontainers.image.revision=$revision"
    --label "org.opencontainers.image.version=$VERSION" --label "org.opencontainers.image.created=$created"
    --label "org.opencontainers.image.licenses=$LICENSES")
}

build_one() {
  local name=$1 variant=$2 dir parent args=()
  dir=$(family_dir "$name") || die "unknown family '$name'; known: $(all_names | tr '\n' ' ')"
  if [[ -n ${FRAMEWORK_OF_BASE[$name]:-} ]]; then
    args+=(--build-arg "BASE_IMAGE=$BASE" --build-arg "FRAMEWORK=${FRAMEWORK_OF_BASE[$name]}")
  else
    parent=$(parent_of "$dir")
    [[ -n $parent ]] || die "$dir/Dockerfile lacks 'ARG FRAMEWORK_IMAGE=byoc-<base|mxnet|tensorflow>:...'"
    build_one "$parent" "$variant"
    args+=(--build-arg "FRAMEWORK_IMAGE=$(image_name "$parent"):$VERSION-$variant")
  fi
  [[ -n ${BUILT[$name-$variant]:-} ]] && return 0
  docker_build "$name" "$variant" "$dir" Dockerfile "${args[@]}"
  BUILT[$name-$variant]=1
}

has_serve() { local dir; dir=$(family_dir "$1") && [[ -z ${FRAMEWORK_OF_BASE[$1]:-} && -f $dir/Dockerfile.serve ]]; }

build_serve() {  # the serve-only image: the family's Dockerfile.serve on its (framework-free) parent, CPU only
  local name=$1 dir parent
  dir=$(family_dir "$name")
  parent=$(parent_of "$dir" Dockerfile.serve)
  [[ -n $parent ]] || die "$dir/Dockerfile.serve lacks 'ARG FRAMEWORK_IMAGE=byoc-base:...'"
  build_one "$parent" cpu
  [[ -n ${BUILT[$name-cpu-serve]:-} ]] && return 0
  docker_build "$name" cpu-serve "$dir" Dockerfile.serve --build-arg "FRAMEWORK_IMAGE=$(image_name "$parent"):$VERSION-cpu"
  BUILT[$name-cpu-serve]=1
}

docker_build() {  # NAME TAG_SUFFIX DIR DOCKERFILE [docker build args...]: byoc-NAME:<version>-SUFFIX and latest-SUFFIX
  local name=$1 suffix=$2 dir=$3 dockerfile=$4 tag log started=$SECONDS
  shift 4
  stage_ca_bundle "$dir"
  tag="$(image_name "$name"):$VERSION-$suffix"
  say "building $tag from $dir${dockerfile/#Dockerfile/}"
  log=$(mktemp)
  if ! docker build "$@" --build-arg "VARIANT=${suffix%-serve}" "${LABELS[@]}" -f "$dir/$dockerfile" \
    --label "org.opencontainers.image.title=$(image_name "$name")" -t "$tag" -t "$(image_name "$name"):latest-$suffix" "$dir" >"$log" 2>&1; then
    # pip lists every hash a lock allows for a package: fold those runs so the package's name stays in view.
    awk '/^ +Expected +or / {n++; next} n {print "        (and " n " more allowed hashes)"; n = 0} {print}' "$log" | tail -40 >&2
    if grep -q "DO NOT MATCH THE HASHES" "$log"; then
      say "a downloaded package does not match the hashes its lock pins (tampered download or lock?):" \
        "$(grep -oE '^ +[A-Za-z0-9._-]+==[^ ]+ from [^ ]+' "$log" | sed -E 's/^ +//; s/ from .*//' | sort -u | tr '\n' ' ')"
    fi
    rm -f "$log"
    die "building $tag failed (log above; rerun: DOCKER_BUILDKIT=0 docker build $* --build-arg VARIANT=${suffix%-serve} -f $dir/$dockerfile $dir)"
  fi
  [[ -n ${BYOC_BUILD_LOG:-} ]] && cat "$log" >&2
  rm -f "$log"
  say "built $tag in $((SECONDS - started)) s"
}

parse_common() {  # sets VARIANT, SERVE (1: serve-only images), FULL (1: full images only), NAMES; the rest go to REST
  VARIANT=cpu; SERVE=0; FULL=0; NAMES=(); REST=()
  while (($#)); do
    case $1 in
      --gpu) VARIANT=gpu ;;
      --cpu) VARIANT=cpu ;;
      --serve) SERVE=1 ;;
      --full) FULL=1 ;;
      --*) REST+=("$1"); [[ $# -gt 1 && $2 != --* ]] && { REST+=("$2"); shift; } ;;
      *) family_dir "$1" >/dev/null || die "unknown family '$1'; known: $(all_names | tr '\n' ' ')"; NAMES+=("$1") ;;
    esac
    shift
  done
  ((SERVE && FULL)) && die "--serve and --full exclude each other (neither: both kinds of image)"
  ((SERVE)) && [[ $VARIANT == gpu ]] && die "serve-only images are CPU only (numpy): drop --gpu"
  return 0
}

serve_names() {  # SERVING: the NAMES that have a serve-only image; die when --serve names one without
  local name family with=""
  SERVING=()
  for name in "${NAMES[@]}"; do
    if has_serve "$name"; then SERVING+=("$name")
    elif ((SERVE && EXPLICIT)); then
      for family in $(product_families); do has_serve "$family" && with+=" $family"; done
      die "$name has no serve-only image (no $(family_dir "$name")/Dockerfile.serve); families with one:$with"
    fi
  done
  return 0
}

cmd_build() {
  parse_common "$@"
  ((${#REST[@]} == 0)) || die "build: unknown option ${REST[0]}"
  EXPLICIT=1
  ((${#NAMES[@]})) || { EXPLICIT=0; mapfile -t NAMES < <(product_families); }
  SERVING=()
  if [[ $VARIANT == cpu ]] && ((!FULL)); then serve_names; fi
  check_docker
  BASE=$(resolve_base_image)
  declare -gA BUILT=()
  provenance
  if ((!SERVE)); then for name in "${NAMES[@]}"; do build_one "$name" "$VARIANT"; done; fi
  for name in "${SERVING[@]}"; do build_serve "$name"; done
}

cmd_push() {
  parse_common "$@"
  local registry="" ecr=0 region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}" account="" i=0
  while ((i < ${#REST[@]})); do
    case ${REST[$i]} in
      --registry) registry=${REST[$((i + 1))]:-}; ((i += 2)) ;;
      --ecr) ecr=1; ((i += 1)) ;;
      --region) region=${REST[$((i + 1))]:-}; ((i += 2)) ;;
      --account) account=${REST[$((i + 1))]:-}; ((i += 2)) ;;
      *) die "push: unknown option ${REST[$i]}" ;;
    esac
  done
  EXPLICIT=1
  ((${#NAMES[@]})) || { EXPLICIT=0; mapfile -t NAMES < <(product_families); }
  local suffix=$VARIANT
  if ((SERVE)); then serve_names; NAMES=("${SERVING[@]}"); suffix=$VARIANT-serve; fi
  check_docker
  if ((ecr)); then
    local ecr_args=(--repositories)
    for name in "${NAMES[@]}"; do ecr_args+=("$(image_name "$name")"); done
    [[ -n $region ]] && ecr_args+=(--region "$region")
    [[ -n $account ]] && ecr_args+=(--account "$account")
    registry=$(python3 -m tools.ecr "${ecr_args[@]}") || die "ECR login failed (see above)"
  elif [[ -z $registry ]]; then
    die "push: give --registry URI or --ecr"
  elif [[ -n ${REGISTRY_USERNAME:-} ]]; then
    printf '%s' "${REGISTRY_PASSWORD:-}" | docker login --username "$REGISTRY_USERNAME" --password-stdin "$registry" >/dev/null 2>/tmp/byoc-login.$$ \
      || die "docker login to $registry as $REGISTRY_USERNAME failed: $(cat /tmp/byoc-login.$$)"
  fi
  registry=${registry%/}
  for name in "${NAMES[@]}"; do
    local local_tag remote_tag
    local_tag="$(image_name "$name"):$VERSION-$suffix"
    docker image inspect "$local_tag" >/dev/null 2>&1 ||
      die "$local_tag is not built: ./build.sh build $name${VARIANT/cpu/}$( ((SERVE)) && echo " --serve")"
    for t in "$VERSION-$suffix" "latest-$suffix"; do
      remote_tag="$registry/$(image_name "$name"):$t"
      docker tag "$local_tag" "$remote_tag"
      if ! docker push -q "$remote_tag" >/tmp/byoc-push.$$ 2>&1; then
        die "pushing $remote_tag failed: $(tail -3 /tmp/byoc-push.$$) (credentials? run docker login $registry or set REGISTRY_USERNAME/REGISTRY_PASSWORD)"
      fi
    done
    echo "$registry/$(image_name "$name"):$VERSION-$suffix $(docker image inspect --format '{{index .RepoDigests 0}}' "$remote_tag" 2>/dev/null | sed 's/.*@//')"
  done
  rm -f /tmp/byoc-push.$$ /tmp/byoc-login.$$
}

cmd_list() {
  check_docker
  local ref
  {
    printf 'REPOSITORY\tTAG\tSIZE\tCREATED\tREVISION\n'
    docker images --filter 'reference=byoc-*' --format '{{.Repository}}:{{.Tag}}\t{{.Size}}\t{{.CreatedSince}}' |
      while IFS=$'\t' read -r ref size since; do
        printf '%s\t%s\t%s\t%s\t%s\n' "${ref%%:*}" "${ref#*:}" "$size" "$since" \
          "$(docker image inspect --format '{{index .Config.Labels "org.opencontainers.image.revision"}}' "$ref")"
      done
  } | column -t -s $'\t'
}

lock_debian() {  # containers/base/debian/<stage>.lock: every package the stage ends with, name=version
  local dir=containers/base/debian stage wanted
  for stage in runtime builder; do
    wanted=$(sed 's/#.*//' "$dir/runtime.txt")
    [[ $stage == builder ]] && wanted+=" $(sed 's/#.*//' "$dir/builder.txt")"
    {
      echo "# Locked by ./build.sh lock on $BASE ($(docker image inspect --format '{{.Id}}' "$BASE" | cut -c1-19)):"
      echo "# every Debian package of the $stage stage after installing $dir/runtime.txt$([[ $stage == builder ]] && echo " and builder.txt")."
      echo "# apt-install-locked installs exactly these and fails the build if the result differs."
      echo "# inputs-sha256: $(cat "$dir/runtime.txt" $([[ $stage == builder ]] && echo "$dir/builder.txt") | sha256sum | cut -d' ' -f1)"
      docker run --rm "$BASE" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $(echo $wanted) >/dev/null && dpkg-query -W -f '\${db:Status-Abbrev} \${Package}=\${Version}\n'" |
        awk '$1 == "ii" {print $2}' | sort
    } >"$dir/$stage.lock.new" || die "locking the Debian packages of the $stage stage failed"
    mv "$dir/$stage.lock.new" "$dir/$stage.lock"
    say "wrote $dir/$stage.lock ($(grep -vc '^#' "$dir/$stage.lock") packages)"
  done
}

cmd_sbom() {  # no image named: every byoc image of this version
  check_docker
  local images=() rest=()
  while (($#)); do
    case $1 in
      --*) rest+=("$1"); [[ $# -gt 1 && $2 != --* ]] && { rest+=("$2"); shift; } ;;
      *) images+=("$1") ;;
    esac
    shift
  done
  if ((${#images[@]} == 0)); then
    mapfile -t images < <(docker images --filter 'reference=byoc-*' --format '{{.Repository}}:{{.Tag}}' | grep ":$VERSION-" | sort)
    ((${#images[@]})) || die "sbom: no byoc image of version $VERSION is built (./build.sh build)"
  fi
  python3 -m tools.sbom "${images[@]}" "${rest[@]}"
}

cmd_lock() {
  local check=0 arg
  for arg in "$@"; do [[ $arg == --check ]] && check=1; done
  python3 -m tools.lock "$@" || exit 1
  ((check)) && return 0
  check_docker
  BASE=$(resolve_base_image)
  lock_debian
}

case ${1:-} in
  build) shift; cmd_build "$@" ;;
  push) shift; cmd_push "$@" ;;
  list) cmd_list ;;
  families) all_names ;;
  lock) shift; cmd_lock "$@" ;;
  sbom) shift; cmd_sbom "$@" ;;
  audit) shift; python3 -m tools.audit "$@" ;;
  -h|--help|help|"") sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (build, push, list, families, lock, sbom, audit)" ;;
esac
