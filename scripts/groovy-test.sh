#!/bin/sh
# groovy-test.sh: compile every Groovy file of the shared library (vars/,
# Jenkinsfile.d/, jobs/, the example's Jenkinsfile) and run the Groovy unit tests (test/groovy/) on
# Debian's Groovy 2.4.21 (the Groovy Jenkins runs pipelines with) and JUnit 4.
#
# Run from anywhere; exits non-zero on a compile error or a failing test.
# As root on Debian it installs groovy, junit4 and default-jdk-headless when
# missing. BRANCHML_UPDATE_GOLDEN=1 rewrites test/groovy/golden/ instead of
# comparing against it.
set -eu

root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"

need=""
command -v groovyc >/dev/null 2>&1 || need="$need groovy"
[ -f /usr/share/java/junit4.jar ] || need="$need junit4"
if [ -z "${JAVA_HOME:-}" ] && [ ! -x /usr/lib/jvm/default-java/bin/java ]; then
	need="$need default-jdk-headless"
fi
if [ -n "$need" ]; then
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "groovy-test.sh: missing$need; install them (Debian: apt-get install -y$need)" >&2
		exit 2
	fi
	echo "groovy-test.sh: installing$need" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# Debian's groovy launcher needs JAVA_HOME or /usr/lib/jvm/default-java.
if [ -z "${JAVA_HOME:-}" ]; then
	JAVA_HOME=/usr/lib/jvm/default-java
	export JAVA_HOME
fi

jars=/usr/share/java
groovy_jar=$(ls "$jars"/groovy-all-2*.jar "$jars"/groovy-all.jar 2>/dev/null | head -n 1)
hamcrest=$(ls "$jars"/hamcrest-core.jar "$jars"/hamcrest.jar 2>/dev/null | head -n 1)
cp_libs="$groovy_jar:$jars/junit4.jar:$hamcrest"

out=$(mktemp -d "${TMPDIR:-/tmp}/branchml-groovy.XXXXXX")
trap 'rm -rf "$out"' EXIT INT TERM

# 1. Stubs (annotations Jenkins provides) and the harness.
mkdir -p "$out/stubs" "$out/test" "$out/library"
groovyc -d "$out/stubs" test/groovy/stubs/*.groovy
groovyc -cp "$out/stubs:$cp_libs" -d "$out/test" test/groovy/harness/*.groovy

# 2. Every library file compiles: one groovyc per directory (scripts are
#    classes named after their files). Dynamic Groovy fails only on missing
#    classes, not on DSL methods, so the stubs are enough.
n=0
for dir in vars Jenkinsfile.d jobs; do
	set -- "$dir"/*.groovy
	[ -f "$1" ] || continue
	mkdir -p "$out/library/$dir"
	if ! groovyc -cp "$out/stubs:$out/test:$cp_libs" -d "$out/library/$dir" "$@"; then
		echo "groovy-test.sh: $dir/ does not compile (see above)" >&2
		exit 1
	fi
	n=$((n + $#))
done
# The example's Jenkinsfile (no .groovy suffix: compiled as a copy).
mkdir -p "$out/example" "$out/library/example"
cp examples/djia30/Jenkinsfile "$out/example/Jenkinsfile.groovy"
groovyc -cp "$out/stubs:$out/test:$cp_libs" -d "$out/library/example" "$out/example/Jenkinsfile.groovy"
n=$((n + 1))
echo "groovy-test.sh: compiled $n library files"

# 3. The unit tests.
groovyc -cp "$out/stubs:$out/test:$cp_libs" -d "$out/test" test/groovy/tests/*.groovy
classes=$(cd "$out/test" && ls branchml/tests/*Test.class | sed 's/\.class$//; s#/#.#g')
BRANCHML_REPO_ROOT="$root" java -cp "$out/stubs:$out/test:$cp_libs" org.junit.runner.JUnitCore $classes
