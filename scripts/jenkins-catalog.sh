#!/bin/sh
# jenkins-catalog.sh: regenerates test/groovy/catalog/jenkins.json, the steps,
# symbols and parameters of the Jenkins plugins pinned in plugins.txt (and of
# the Jenkins core named by its "# jenkins-version:" line), read from their
# sources at the release tags. The Groovy tests reject anything not in it.
#
#   scripts/jenkins-catalog.sh SOURCES
#
# SOURCES holds one git repository per source repository of
# github.com/jenkinsci, as <repo>.git (bare) or <repo>/ (a clone) with its
# tags, e.g.:
#
#   mkdir -p ~/src/jenkinsci && cd ~/src/jenkinsci
#   for r in jenkins workflow-cps-plugin workflow-job-plugin ...; do
#     git clone --bare --filter=blob:none https://github.com/jenkinsci/$r.git
#   done
#
# (the list of repositories is SOURCES in scripts/jenkins_catalog.groovy).
# Run it after changing a version in plugins.txt, and commit the catalog.
set -eu
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: scripts/jenkins-catalog.sh SOURCES (a directory of jenkinsci git repositories)" >&2
	exit 2
fi
if [ -z "${JAVA_HOME:-}" ]; then
	JAVA_HOME=/usr/lib/jvm/default-java
	export JAVA_HOME
fi
exec groovy "$root/scripts/jenkins_catalog.groovy" "$1" "$root/plugins.txt" "$root/test/groovy/catalog/jenkins.json"
