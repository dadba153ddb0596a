# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for ansible-test's pip bootstrap script (get-pip-<version>.py).

`ansible-test sanity --venv` downloads get-pip from a host this project's machines cannot reach.
scripts/test.sh copies this file into ansible-test's cache instead: it installs the bundled pip
with ensurepip, then the requested pip version from the package index, which is what the real
script achieves.

ansible-test runs pip with PIP_CONFIG_FILE=/dev/null and a stripped environment, so the first
pip (ensurepip's, which trusts only its bundled CA list) is pointed at the system CA bundle;
the pip it installs (24.2+) uses the system trust store by itself.
"""

import ensurepip
import os
import ssl
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel")


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    ensurepip.bootstrap(upgrade=True)
    paths = ssl.get_default_verify_paths()
    for bundle in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if bundle and os.path.isfile(bundle):
            args = ["--cert", bundle] + args
            break
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade"] + args)


if __name__ == "__main__":
    main()
