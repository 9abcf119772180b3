package branchml.harness

import groovy.json.JsonSlurperClassic

/**
 * The steps, describable symbols and global variables of the Jenkins
 * plugins pinned in plugins.txt, read from test/groovy/catalog/jenkins.json
 * (generated from the plugins' sources by scripts/jenkins-catalog.sh). The
 * harness checks every step call, symbol and parameter against it, the way
 * workflow-cps' DSL and structs' DescribableModel resolve them, in strict
 * mode: an unknown parameter fails (Jenkins only warns), and a step called
 * without one of its @DataBoundConstructor parameters fails (Jenkins passes
 * null, which the step rejects or misreads). A describable built as a value
 * (logRotator(numToKeepStr: '5')) may leave constructor parameters out, as
 * in Jenkins.
 */
class Catalog {
    /** Describable kinds (ancestor simple names) that workflow-cps runs as a step through a metastep. */
    static final Map<String, String> METASTEP_KINDS = [SimpleBuildStep: 'step', BuildStep: 'step', Builder: 'step',
                                                      Recorder: 'step', Publisher: 'step', SimpleBuildWrapper: 'wrap']

    final Map data

    private static Catalog loaded

    Catalog(File json) {
        data = (Map) new JsonSlurperClassic().parse(json)
    }

    /** The catalog of the repository at root (loaded once per JVM). */
    static synchronized Catalog of(File root) {
        if (loaded == null) {
            loaded = new Catalog(new File(root, 'test/groovy/catalog/jenkins.json'))
        }
        return loaded
    }

    Map step(String name) { (Map) data.steps[name] }

    List<Map> symbols(String name) { (List<Map>) (data.describables[name] ?: []) }

    boolean isGlobal(String name) { data.globals.containsKey(name) }

    List<String> currentBuildProperties() { (List<String>) data.currentBuild }

    /** The symbol's describables that workflow-cps can call as a step (a metastep's describable). */
    List<Map> metasteps(String name) {
        symbols(name).findAll { Map d -> d.kinds.any { METASTEP_KINDS.containsKey(it) } && !d.jobDslOnly }
    }

    /** Whether a call name(...) resolves in a pipeline: a step, a symbol or a global. */
    boolean knows(String name) { step(name) != null || !symbols(name).findAll { !it.jobDslOnly }.isEmpty() || isGlobal(name) }

    /** workflow-cps' NoSuchMethodError for a name no plugin of plugins.txt defines. */
    NoSuchMethodError noSuchMethod(String name) {
        return new NoSuchMethodError("No such DSL method '${name}' found among steps ${(data.steps.keySet() as List).sort()} " +
            "or symbols [${data.describables.size()} symbols of plugins.txt] or globals ${(data.globals.keySet() as List).sort()}")
    }

    /**
     * Checks a call of step name with args as workflow-cps' DSL parses them:
     * a single Map is named arguments, a single other value the sole
     * required parameter, a trailing Closure the body of a block step.
     * Throws NoSuchMethodError for an unknown step, IllegalArgumentException
     * for a bad parameter.
     */
    void checkStep(String name, Object[] args) {
        Map st = step(name)
        List<Map> meta = st == null ? metasteps(name) : []
        if (st == null && meta.isEmpty()) {
            throw noSuchMethod(name)
        }
        List a = args as List
        boolean body = !a.isEmpty() && a.last() instanceof Closure
        if (body) { a = a.subList(0, a.size() - 1) }
        if (st != null && body != (st.block as boolean)) {
            throw new IllegalArgumentException(st.block ? "step ${name} expects a block ({ … })" : "step ${name} takes no block")
        }
        Map params = st != null ? (Map) st.params : null
        String type = st != null ? st.class : meta*.class.join(' or ')
        if (a.size() > 1) {
            throw new IllegalArgumentException("step ${name}: ${a.size()} unnamed arguments; name them (${(params ?: meta[0].params).keySet().join(', ')})")
        }
        Map named = a.isEmpty() ? [:] : (a[0] instanceof Map ? (Map) a[0] : null)
        List<Map> candidates = st != null ? [[class: st.class, params: params]] : meta
        List<String> problems = []
        for (Map c in candidates) {
            String p = named != null ? checkNamed((Map) c.params, named, c.class as String) : checkSole((Map) c.params, c.class as String, name)
            if (p == null) { return }
            problems << p
        }
        throw new IllegalArgumentException("step ${name} (${type}): ${problems.unique().join('; ')}")
    }

    /** Checks a symbol call name(args) that builds a describable value, optionally of one kind. */
    void checkSymbol(String name, Object args, String kind = null) {
        List<Map> cands = symbols(name).findAll { !it.jobDslOnly && (kind == null || it.kinds.contains(kind)) }
        if (cands.isEmpty()) {
            if (symbols(name).isEmpty() && step(name) == null) { throw noSuchMethod(name) }
            throw new IllegalArgumentException("${name} is not a ${kind} symbol of the plugins in plugins.txt")
        }
        List<String> problems = []
        for (Map c in cands) {
            String p = args instanceof Map ? checkNamed((Map) c.params, (Map) args, c.class as String, false) :
                (args == null ? null : checkSole((Map) c.params, c.class as String, name))
            if (p == null) { return }
            problems << p
        }
        throw new IllegalArgumentException("${name}: ${problems.unique().join('; ')}")
    }

    /** null when named fits params, else what is wrong (structs' messages). */
    static String checkNamed(Map params, Map named, String type, boolean required = true) {
        List unknown = (named.keySet() as List).findAll { !params.containsKey(it) }.sort()
        if (unknown) {
            return "WARNING: Unknown parameter(s) found for class type '${type}': ${unknown.join(',')}"
        }
        if (!required) { return null }
        List missing = params.findAll { k, v -> v.required && !named.containsKey(k) }.keySet().sort()
        if (missing) {
            return "missing required parameter(s) ${missing.join(', ')} of ${type}"
        }
        return null
    }

    static String checkSole(Map params, String type, String name) {
        List req = params.findAll { k, v -> v.required }.keySet() as List
        return req.size() == 1 ? null : "Arguments to ${type} have to be explicitly named (${name} has ${req.size()} required parameters)"
    }
}
