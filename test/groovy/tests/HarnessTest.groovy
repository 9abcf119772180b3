package branchml.tests

import branchml.harness.Catalog
import branchml.harness.CpsError
import branchml.harness.CurrentBuild
import branchml.harness.PipelineHarness
import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertTrue

/**
 * The harness knows real Jenkins: steps and parameters of the plugins in
 * plugins.txt only (test/groovy/catalog/jenkins.json), CPS' serializability
 * of what is kept across a step, no step in a @NonCPS method. Each fixture
 * in test/groovy/fixtures is a pipeline that Jenkins would reject.
 */
class HarnessTest {
    static final File ROOT = new File(System.getenv('BRANCHML_REPO_ROOT') ?: '.')

    private static Throwable failure(String fixture) {
        PipelineHarness h = new PipelineHarness(ROOT)
        try {
            h.runJenkinsfile(new File(ROOT, "test/groovy/fixtures/${fixture}.groovy"))
        } catch (Throwable t) {
            return t
        }
        return h.buildError
    }

    @Test
    void aStepOfAPluginNotInPluginsTxtIsNoSuchMethodErrorThatNoCatchCatches() {
        Throwable t = failure('absent-plugin-step')
        assertTrue(t instanceof NoSuchMethodError)
        assertTrue(t.message, t.message.startsWith("No such DSL method 'githubNotify' found among steps [archive, bat, catchError,"))
    }

    @Test
    void anUnknownParameterFails() {
        Throwable t = failure('unknown-parameter')
        assertEquals("step sh (org.jenkinsci.plugins.workflow.steps.durable_task.ShellStep): WARNING: Unknown parameter(s) found for class type " +
            "'org.jenkinsci.plugins.workflow.steps.durable_task.ShellStep': retrunStatus", t.message)
    }

    @Test
    void aBlockStepWithoutItsBlockFails() {
        assertEquals('step timeout expects a block ({ … })', failure('block-without-body').message)
    }

    @Test
    void aLazyMapKeptAcrossAStepFailsLikeCps() {
        Throwable t = failure('lazymap-across-step')
        assertTrue(t instanceof CpsError)
        assertTrue(t.message, t.message.startsWith("java.io.NotSerializableException: groovy.json.internal.LazyMap (local variable 'parsed' of "))
        assertTrue(t.message, t.message.contains('kept across the step echo'))
        assertEquals(null, failure('lazymap-in-noncps'))
    }

    @Test
    void aStepInANonCpsMethodFails() {
        Throwable t = failure('step-in-noncps')
        assertTrue(t instanceof CpsError)
        assertTrue(t.message, t.message.startsWith('step echo called from the @NonCPS method '))
    }

    @Test
    void currentBuildHasOnlyRunWrapperProperties() {
        List<String> props = CurrentBuild.declaredFields.findAll { !it.synthetic && !it.name.startsWith('$') && !it.name.startsWith('__') &&
            !java.lang.reflect.Modifier.isStatic(it.modifiers) }.collect { it.name } + ['currentResult']
        List<String> whitelisted = Catalog.of(ROOT).currentBuildProperties()
        assertEquals([], props - whitelisted)
        assertTrue(whitelisted.containsAll(['changeSets', 'buildCauses', 'description', 'result']))
    }

    @Test
    void theCatalogIsOfThePinnedVersions() {
        Map<String, String> pins = [:]
        new File(ROOT, 'plugins.txt').eachLine { String l ->
            def m = l =~ /^\s*([a-z0-9-]+):(\S+)\s*$/
            if (m.matches()) { pins[m.group(1)] = m.group(2) }
        }
        def core = new File(ROOT, 'plugins.txt').text =~ /(?m)^# jenkins-version: (\S+)$/
        pins['jenkins-core'] = core[0][1]
        assertEquals('regenerate the catalog: scripts/jenkins-catalog.sh (see its header)', new TreeMap(pins), new TreeMap(Catalog.of(ROOT).data.versions))
        assertEquals(null, Catalog.of(ROOT).step('githubNotify'))
    }
}
