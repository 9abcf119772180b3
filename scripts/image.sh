#!/bin/sh
# image.sh: builds the branchml agents image daemonless with buildah (vfs
# storage, chroot isolation, a private storage root), from the project
# itself: no base image is pulled. The image is one layer made of
#
#   1. a Debian root file system: `mmdebstrap --variant=minbase` of
#      $DEBIAN_SUITE with ca-certificates, git and openssh-client from
#      $DEBIAN_MIRROR, a user branchml (10001:10001, home /home/branchml);
#   2. the Go toolchain at /usr/local/go, for the build stage's `kind: go`
#      components: the golang.org/toolchain module of $GO_VERSION from the
#      Go module proxy (the archive GOTOOLCHAIN downloads, checked against
#      the checksum database by `go mod download`), for the image's arch;
#   3. the agents at /usr/local/bin: the release archive
#      dist/branchml-agents-$VERSION-linux-$ARCH.tar.gz (make release).
#
# Every file gets the mtime $SOURCE_DATE_EPOCH (default: the commit time of
# the release's source) and the image that creation time, so the same
# inputs give the same image digest.
#
#   scripts/image.sh                       # build $IMAGE
#   PUSH=127.0.0.1:5000/branchml/agents:v0.1.0 scripts/image.sh   # and push it
#
# Environment (defaults in brackets):
#   IMAGE          the local image name [branchml/agents:$VERSION]
#   VERSION        the agents' version [the one pinned in resources/branchml/agents.sha256]
#   ARCH           amd64 [amd64]; arm64 needs an arm64 host (the rootfs is made by running its packages)
#   ROOTFS         a root file system tar to use instead of mmdebstrap's (tests use a minimal one)
#   GO_VERSION     the Go toolchain, or "none" [the go line of the pins]
#   DEBIAN_SUITE   [bookworm]   DEBIAN_MIRROR [http://deb.debian.org/debian]
#   PUSH           an image reference to push to (docker://… is added)
#   TLS_VERIFY     false for a plain-HTTP registry such as one on 127.0.0.1 [true]
#   CACHE          where the rootfs, toolchain tar and buildah storage are kept [~/.cache/branchml/image]
#   FETCH_ONLY     1: only make the cached rootfs and toolchain (steps 1-2; `make image-cache`), build nothing
#   OFFLINE        1: fail, naming `make image-cache`, instead of downloading a rootfs or toolchain not in CACHE
#
# Prints the image ID (and, with PUSH, the pushed digest) on stdout. Needs
# root (buildah's chroot isolation, mmdebstrap --mode=root), buildah,
# mmdebstrap unless ROOTFS is given (both installed with apt-get when
# missing), GNU tar, and go for the toolchain.
set -eu

root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
pins="$root/resources/branchml/agents.sha256"
pin() { sed -n "s/^# $1: *//p" "$pins"; }

VERSION=${VERSION:-$(pin version)}
ARCH=${ARCH:-amd64}
IMAGE=${IMAGE:-branchml/agents:$VERSION}
GO_VERSION=${GO_VERSION:-$(pin go)}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TLS_VERIFY=${TLS_VERIFY:-true}
CACHE=${CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/branchml/image}
AGENTS=${AGENTS:-$root/dist/branchml-agents-$VERSION-linux-$ARCH.tar.gz}

fail() { echo "image.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (buildah chroot isolation and mmdebstrap need it)"
need=""
command -v buildah >/dev/null || need="$need buildah"
[ -n "${ROOTFS:-}" ] || command -v mmdebstrap >/dev/null || need="$need mmdebstrap"
if [ -n "$need" ]; then
	command -v apt-get >/dev/null || fail "missing:$need; install them"
	echo "image.sh: installing$need" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
[ "${FETCH_ONLY:-}" = 1 ] || [ -f "$AGENTS" ] || fail "no agents archive $AGENTS: make image builds it (go run ./tools/release -check -out dist)"
case "$ARCH" in amd64 | arm64) ;; *) fail "ARCH=$ARCH: use amd64 or arm64" ;; esac

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	src=$(pin source)
	SOURCE_DATE_EPOCH=$(git -C "$root" show -s --format=%ct "$src" 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
mkdir -p "$CACHE"
b() { buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver vfs "$@"; }
export BUILDAH_ISOLATION=chroot

# 1. The root file system (cached per suite, arch and day of the mirror's content).
if [ -z "${ROOTFS:-}" ]; then
	ROOTFS="$CACHE/rootfs-$DEBIAN_SUITE-$ARCH.tar"
	if [ ! -f "$ROOTFS" ]; then
		[ "${OFFLINE:-}" != 1 ] || fail "OFFLINE=1 and no root file system $ROOTFS: run 'make image-cache' (it downloads it) first"
		echo "image.sh: making the $DEBIAN_SUITE root file system from $DEBIAN_MIRROR" >&2
		mmdebstrap --variant=minbase --mode=root --format=tar --architectures="$ARCH" \
			--include=ca-certificates,git,openssh-client \
			--customize-hook='chroot "$1" groupadd --gid 10001 branchml' \
			--customize-hook='chroot "$1" useradd --uid 10001 --gid 10001 --create-home --home-dir /home/branchml --shell /bin/sh branchml' \
			--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/* "$1"/etc/machine-id "$1"/etc/hostname "$1"/etc/resolv.conf' \
			"$DEBIAN_SUITE" "$ROOTFS.tmp" "$DEBIAN_MIRROR" >&2
		mv "$ROOTFS.tmp" "$ROOTFS"
	fi
fi
[ -f "$ROOTFS" ] || fail "ROOTFS=$ROOTFS is no file"

# 2. The Go toolchain, as a tar with fixed owner and mtime.
gotar=""
if [ "$GO_VERSION" != none ]; then
	command -v go >/dev/null || fail "go is needed to download the Go toolchain module (or GO_VERSION=none)"
	mod="golang.org/toolchain@v0.0.1-$GO_VERSION.linux-$ARCH"
	gotar="$CACHE/$GO_VERSION.linux-$ARCH.tar"
	if [ ! -f "$gotar" ]; then
		[ "${OFFLINE:-}" != 1 ] || fail "OFFLINE=1 and no Go toolchain $gotar: run 'make image-cache' (it downloads it) first"
		dir=$(cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
		[ -d "$dir" ] || fail "go mod download $mod gave no directory"
		# What cmd/go does to a downloaded toolchain (toolchain/select.go):
		# module zips keep no modes, so set the executables' bits (pkg/tool,
		# lib/**/go_*_*_exec, bin), and turn each _go.mod back into go.mod.
		stage="$CACHE/go-stage"
		rm -rf "$stage" && mkdir -p "$stage"
		cp -R "$dir" "$stage/go"
		rm -f "$stage/go/go.mod"
		find "$stage/go" -type d -exec chmod 0755 {} + && find "$stage/go" -type f -exec chmod 0644 {} +
		find "$stage/go/pkg/tool" "$stage/go/bin" -type f -exec chmod 0755 {} +
		find "$stage/go/lib" -type f -name 'go_?*_?*_exec' -exec chmod 0755 {} +
		find "$stage/go" -name _go.mod | while read -r m; do cp "$m" "$(dirname "$m")/go.mod"; done
		tar --create --file "$gotar.tmp" --directory "$stage" --sort=name \
			--mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner go
		rm -rf "$stage"
		mv "$gotar.tmp" "$gotar"
	fi
fi

if [ "${FETCH_ONLY:-}" = 1 ]; then
	echo "image.sh: cached in $CACHE: $(basename "$ROOTFS")${gotar:+, $(basename "$gotar")}" >&2
	exit 0
fi

# 3. One layer: rootfs, toolchain, agents; the image's configuration.
ctr=$(b from --quiet scratch)
trap 'b rm "$ctr" >/dev/null 2>&1 || true' EXIT INT TERM
b add --quiet "$ctr" "$ROOTFS" / >/dev/null
if [ -n "$gotar" ]; then
	b add --quiet "$ctr" "$gotar" /usr/local/ >/dev/null
fi
b add --quiet "$ctr" "$AGENTS" /usr/local/bin/ >/dev/null
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
b config --arch "$ARCH" --os linux --user 10001:10001 --workingdir /home/branchml \
	--env HOME=/home/branchml --env PATH=/usr/local/go/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	--env GOTOOLCHAIN=local --env CGO_ENABLED=0 \
	--label org.opencontainers.image.title="branchml agents" \
	--label org.opencontainers.image.source=https://github.com/branchml/branchml \
	--label org.opencontainers.image.version="$VERSION" \
	--label org.opencontainers.image.revision="$(pin source)" \
	--label dev.branchml.go="$GO_VERSION" \
	--cmd '["branchml","--help"]' "$ctr"
id=$(b commit --quiet --rm --omit-history --identity-label=false --timestamp "$SOURCE_DATE_EPOCH" "$ctr" "$IMAGE")
trap - EXIT INT TERM
echo "$id"
echo "image.sh: built $IMAGE ($id) from $(basename "$ROOTFS"), ${gotar:+$(basename "$gotar"), }$(basename "$AGENTS") at revision $revision" >&2

if [ -n "${PUSH:-}" ]; then
	b push --quiet --tls-verify="$TLS_VERIFY" --digestfile "$CACHE/pushed.digest" "$IMAGE" "docker://$PUSH" >&2
	echo "$PUSH@$(cat "$CACHE/pushed.digest")"
fi
