package branchml.harness

/**
 * A small interpreter of the declarative pipeline syntax: it collects
 * agent, options, stages (with when/expression and steps) and post, records
 * them, then runs the stages in order and the post conditions the build's
 * result selects (always, success, unstable, failure, aborted, cleanup), as
 * Jenkins' pipeline-model-definition does. Only what branchmlPipeline uses.
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

    void kubernetes(Closure c) {
        Map k = [:]
        d.agent.kubernetes = k
        Declarative.declare(c, new KubernetesSection(k))
    }

    void label(String l) { d.agent.label = l }
}

class KubernetesSection {
    final Map k

    KubernetesSection(Map k) { this.k = k }

    void yaml(String y) { k.yaml = y }

    void defaultContainer(String c) { k.defaultContainer = c }
}

class OptionsSection {
    final Declarative d

    OptionsSection(Declarative d) { this.d = d }

    def methodMissing(String name, Object args) {
        Object[] a = (Object[]) args
        if (d.declared) { throw new MissingMethodException(name, OptionsSection, a) }
        Map o = [name: name, args: a.length == 1 ? a[0] : a.toList()]
        if (name == 'logRotator') { return o }
        d.options << o
        return o
    }
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
        Declarative.declare(c, new StageSection(s))
    }
}

class StageSection {
    final Map s

    StageSection(Map s) { this.s = s }

    void when(Closure c) { Declarative.declare(c, new WhenSection(s)) }

    void steps(Closure c) {
        // The body runs later with the normal (owner-first) resolution, so
        // that scripted stage() and every step reach the harness binding.
        c.resolveStrategy = Closure.OWNER_FIRST
        s.steps = c
    }
}

class WhenSection {
    final Map s

    WhenSection(Map s) { this.s = s }

    void expression(Closure c) { s.when = c }
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
        if (!(name in ['always', 'success', 'unstable', 'failure', 'aborted', 'unsuccessful', 'cleanup', 'changed', 'fixed', 'regression'])) {
            throw new PipelineError("post: unknown condition ${name}")
        }
        Closure c = (Closure) a[0]
        c.resolveStrategy = Closure.OWNER_FIRST
        d.post[name] = c
    }
}
