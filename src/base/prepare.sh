# pkgcell: prepare a new base chroot. Runs once, as root inside pkgcell's
# sandbox (uid 0 = the calling user, 1..65535 its subordinate ids) with the
# new base as its root, so every path below stays inside the base even when
# the base's own files are symlinks. The texts to write come from pkgcell in
# PKGCELL_* variables (see src/base/prepare.rs).
set -eu

# The build user. makepkg refuses to run as root, and builds run as uid 1000.
if ! grep -q '^builder:' /etc/passwd 2>/dev/null; then
    if grep -q '^[^:]*:[^:]*:1000:' /etc/passwd 2>/dev/null; then
        echo "pkgcell: uid 1000 is taken by another user; the build user builder needs it" >&2
        exit 1
    fi
    echo 'builder:x:1000:1000:pkgcell build user:/home/builder:/bin/bash' >> /etc/passwd
    grep -q '^builder:' /etc/group 2>/dev/null || echo 'builder:x:1000:' >> /etc/group
    if [ -f /etc/shadow ]; then echo 'builder:!::::::' >> /etc/shadow; fi
fi
# Mount points used at build time (makepkg's BUILDDIR, pkgcell's repo, the
# shared package cache) exist in the base, so that binding them never has to
# write into a read-only lower layer.
# A root without a pacman database (a plain debootstrap or mmdebstrap
# tarball) is a root with no packages, as pacman sees it: give it an empty
# database, so that planning and pacman -U in dependency layers work.
mkdir -p /home/builder /build /pkgcell-repo /var/cache/pacman/pkg /var/lib/pacman/local /etc /tmp /var/tmp
chown 1000:1000 /home/builder /build

# makepkg.conf is sourced by makepkg: later assignments win, so appending is enough.
if [ -f /etc/makepkg.conf ]; then
    printf '%s\n' "$PKGCELL_MAKEPKG_CONF" >> /etc/makepkg.conf
fi

if [ -n "${PKGCELL_PACMAN_CONF:-}" ]; then
    printf '%s' "$PKGCELL_PACMAN_CONF" > /etc/pacman.conf
elif [ -f /etc/pacman.conf ]; then
    # See src/base/pacman_conf.rs: pacman 7's DownloadUser is turned off.
    sed -i -e 's/^[[:space:]]*DownloadUser/#&/' /etc/pacman.conf
else
    printf '[options]\n' > /etc/pacman.conf
fi
printf '%s' "$PKGCELL_PACMAN_REPO" >> /etc/pacman.conf

# pacman's CheckSpace reads the mount table there, as Arch's filesystem package provides it.
[ -e /etc/mtab ] || [ -L /etc/mtab ] || ln -s ../proc/self/mounts /etc/mtab

printf '%s' "$PKGCELL_HOSTS" > /etc/hosts
printf 'LANG=C.UTF-8\n' > /etc/locale.conf

# A keyring of the base's own, for installing signed dependencies at build
# time. Only where the base ships keyrings to populate it from (Arch's
# archlinux-keyring) or [base] keys names keys to trust; pacman-key needs
# gpg and a /dev/urandom, which the sandbox provides.
keys=${PKGCELL_KEYS_DIR:-}
if [ "$PKGCELL_KEYRING" = init ] && command -v pacman-key >/dev/null 2>&1 && [ ! -d /etc/pacman.d/gnupg ]; then
    if ls /usr/share/pacman/keyrings/*.gpg >/dev/null 2>&1; then
        pacman-key --init
        pacman-key --populate
    elif [ -n "$keys" ]; then
        pacman-key --init
    fi
fi
# The keys of [base] keys: added and locally signed, as a user trusts the
# key of their own repository.
if [ -n "$keys" ]; then
    if ! command -v pacman-key >/dev/null 2>&1 || ! command -v gpg >/dev/null 2>&1; then
        echo "pkgcell: [base] keys: the base has no pacman-key and gpg to add the keys with" >&2
        exit 1
    fi
    for k in "$keys"/*; do
        pacman-key --add "$k"
        for fpr in $(gpg --homedir /etc/pacman.d/gnupg --with-colons --show-keys "$k" | awk -F: '$1 == "pub" { p = 1 } $1 == "fpr" && p { print $10; p = 0 }'); do
            pacman-key --lsign-key "$fpr"
        done
    done
    gpgconf --homedir /etc/pacman.d/gnupg --kill all 2>/dev/null || true
fi

printf '%s\n' "$PKGCELL_MARKER" > /etc/pkgcell-base
