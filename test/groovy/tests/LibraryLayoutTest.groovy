package branchml.tests

import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertTrue

/**
 * Reflective checks of the library's layout: every vars/ step has its help
 * page (vars/<step>.txt, as Jenkins shows it) and a test class
 * branchml.tests.<Step>Test with at least one @Test method.
 */
class LibraryLayoutTest {
    static final File ROOT = new File(System.getenv('BRANCHML_REPO_ROOT') ?: '.')

    private static List<String> steps() {
        return new File(ROOT, 'vars').listFiles().findAll { it.name.endsWith('.groovy') }.collect { it.name - '.groovy' }.sort()
    }

    @Test
    void everyStepHasAHelpPage() {
        List<String> missing = steps().findAll { String s ->
            File help = new File(ROOT, "vars/${s}.txt")
            !help.isFile() || !help.text.contains(s)
        }
        assertEquals('steps without a vars/<step>.txt naming the step', [], missing)
        List<String> orphans = new File(ROOT, 'vars').listFiles().findAll { it.name.endsWith('.txt') }
            .collect { it.name - '.txt' }.findAll { !(it in steps()) }
        assertEquals('help pages without a step', [], orphans)
    }

    @Test
    void everyStepHasATest() {
        List<String> missing = steps().findAll { String s ->
            String cls = 'branchml.tests.' + s.capitalize() + 'Test'
            try {
                Class c = Class.forName(cls, false, LibraryLayoutTest.classLoader)
                !c.methods.any { it.getAnnotation(Test) != null }
            } catch (ClassNotFoundException ignored) {
                true
            }
        }
        assertEquals('steps without a test class branchml.tests.<Step>Test', [], missing)
        assertTrue(steps().size() >= 7)
    }
}
