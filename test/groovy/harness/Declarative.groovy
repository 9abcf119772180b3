package branchml.harness

/**
 * A small interpreter of the declarative pipeline syntax: it collects
 * agent, options, stages (with when/expression and steps) and post, records
 * them, then runs the stages in order and the post conditions the build's
 * result selects (always, success, unstable, failure, aborted, cleanup), as
 * Jenkins' pipeline-model-definition does. Only what branchmlPipeline uses.
 * Agent types, options, post conditions and when conditions are checked
 * against the {@link Catalog} (their symbols and parameters).
 */
class Declarative {
    final PipelineHarness h
    Map agent = [:]
    List<Map> options = []
    List<Map> stages = []
    Map<String, Closure> post = [:]
    boolean declared

    Declarative(PipelineHarness h) { this.h = h }

    void run(Closure body) {
        declare(body, new PipelineSection(this))
        declared = true
        h.record('pipeline', [agent: agent, options: options, stages: stages.collect { it.name }])
        Map timeout = options.find { it.name == 'timeout' }?.args as Map
        try {
            if (timeout) { h.record('timeout', timeout) }
            stages.each { Map s -> runStage(s) }
        } catch (PipelineError e) {
            h.buildError = e
            h.currentBuild.result = 'FAILURE'
        } catch (FlowInterrupted e) {
            h.buildError = e
            h.currentBuild.result = 'ABORTED'
        }
        String result = h.currentBuild.currentResult
        List<String> order = ['always', result == 'SUCCESS' ? 'success' : null,
                              result == 'UNSTABLE' ? 'unstable' : null,
                              result == 'FAILURE' ? 'failure' : null,
                              result == 'ABORTED' ? 'aborted' : null,
                              result != 'SUCCESS' ? 'unsuccessful' : null, 'cleanup'].findAll { it }
        order.each { String cond ->
            if (post[cond]) {
                h.record('post', cond)
                post[cond].call()
            }
        }
    }

    private void runStage(Map s) {
        if (s.when && !s.when.call()) {
            h.record('stage', s.name, [skipped: true])
            return
        }
        h.record('stage', s.name)
        s.steps.call()
    }

    static void declare(Closure c, Object delegate) {
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c.delegate = delegate
        c.call()
    }
}

class PipelineSection {
    final Declarative d

    PipelineSection(Declarative d) { this.d = d }

    void agent(Closure c) { Declarative.declare(c, new AgentSection(d)) }

    /** agent any / agent none. */
    void agent(String kind) { d.agent[kind] = true }

    String getAny() { 'any' }

    String getNone() { 'none' }

    void options(Closure c) { Declarative.declare(c, new OptionsSection(d)) }

    void stages(Closure c) { Declarative.declare(c, new StagesSection(d)) }

    void post(Closure c) { Declarative.declare(c, new PostSection(d)) }
}

class AgentSection {
    final Declarative d

    AgentSection(Declarative d) { this.d = d }

    /** An agent type (kubernetes { yaml …; defaultContainer … }): a DeclarativeAgent symbol and its parameters. */
    def methodMissing(String name, Object args) {
        Object[] a = (Object[]) args
        if (name == 'label' && a.length == 1 && a[0] instanceof String) {
            d.agent.label = a[0]
            return null
        }
        Map k = [:]
        if (a.length == 1 && a[0] instanceof Closure) {
            Declarative.declare((Closure) a[0], new ParamSection(k))
        }
        d.h.catalog.checkSymbol(name, k, 'DeclarativeAgent')
        d.agent[name] = k
        return null
    }
}

/** Collects name(value) calls as parameters. */
class ParamSection {
    final Map k

    ParamSection(Map k) { this.k = k }

    def methodMissing(String name, Object args) {
        Object[] a = (Object[]) args
        k[name] = a.length == 1 ? a[0] : a.toList()
        return null
    }
}

class OptionsSection {
    final Declarative d

    OptionsSection(Declarative d) { this.d = d }

    def methodMissing(String name, Object args) {
        Object[] a = (Object[]) args
        if (d.declared) { throw new MissingMethodException(name, OptionsSection, a) }
        Map o = new Described([name: name, args: a.length == 1 ? a[0] : a.toList()])
        Catalog c = d.h.catalog
        Map named = a.length == 1 && a[0] instanceof Map && !(a[0] instanceof Described) ? (Map) a[0] : null
        if (name == 'logRotator') {
            c.checkSymbol(name, named ?: [:], 'BuildDiscarder')
            return o
        }
        Map st = c.step(name)
        if (st != null && st.block) {
            // A block-scoped step as an option wraps the whole build (timeout, retry).
            String bad = Catalog.checkNamed((Map) st.params, named ?: [:], st.class as String)
            if (bad) { throw new IllegalArgumentException("options: ${name}: ${bad}") }
        } else if (c.symbols(name).any { it.kinds.contains('OptionalJobProperty') || it.kinds.contains('JobProperty') }) {
            c.checkSymbol(name, a.length == 0 ? [:] : (named ?: [strategy: a[0]]),
                c.symbols(name).find { it.kinds.contains('OptionalJobProperty') } ? 'OptionalJobProperty' : 'JobProperty')
        } else if (c.symbols(name).any { it.kinds.contains('DeclarativeOption') }) {
            c.checkSymbol(name, named ?: [:], 'DeclarativeOption')
        } else {
            throw new IllegalArgumentException("options: ${name} is neither a block step, a job property nor a declarative option of plugins.txt")
        }
        d.options << o
        return o
    }
}

/** A describable built inside options (logRotator(…)), passed on as a value. */
class Described extends LinkedHashMap {
    Described(Map m) { super(m) }
}

class StagesSection {
    final Declarative d

    StagesSection(Declarative d) { this.d = d }

    void stage(String name, Closure c) {
        if (d.declared) {
            // A scripted stage() inside steps { script { } } resolves here
            // through the closure owners; run it as the scripted step.
            ((Closure) d.h.binding.getVariable('stage')).call(name, c)
            return
        }
        Map s = [name: name]
        d.stages << s
        Declarative.declare(c, new StageSection(d, s))
    }
}

class StageSection {
    final Declarative d
    final Map s

    StageSection(Declarative d, Map s) {
        this.d = d
        this.s = s
    }

    void when(Closure c) { Declarative.declare(c, new WhenSection(d, s)) }

    void steps(Closure c) {
        // The body runs later with the normal (owner-first) resolution, so
        // that scripted stage() and every step reach the harness binding.
        c.resolveStrategy = Closure.OWNER_FIRST
        s.steps = c
    }
}

class WhenSection {
    final Declarative d
    final Map s

    WhenSection(Declarative d, Map s) {
        this.d = d
        this.s = s
    }

    void expression(Closure c) {
        d.h.catalog.checkSymbol('expression', null, 'DeclarativeStageConditional')
        s.when = c
    }
}

class PostSection {
    final Declarative d

    PostSection(Declarative d) { this.d = d }

    def methodMissing(String name, Object args) {
        Object[] a = (Object[]) args
        if (d.declared) {
            // A step called inside a post condition resolves through this
            // section; hand it on to the closure's owner (the script).
            throw new MissingMethodException(name, PostSection, a)
        }
        if (!d.h.catalog.symbols(name).any { it.kinds.contains('BuildCondition') }) {
            throw new IllegalArgumentException("post: ${name} is no build condition of plugins.txt")
        }
        Closure c = (Closure) a[0]
        c.resolveStrategy = Closure.OWNER_FIRST
        d.post[name] = c
    }
}
