package branchml.harness

import groovy.json.JsonSlurperClassic

/**
 * A minimal, recording stand-in for the Jenkins pipeline runtime, in the
 * spirit of JenkinsPipelineUnit but small enough to read in one sitting.
 *
 * It loads the shared library's vars/*.groovy as scripts sharing one Binding
 * (as Jenkins does for global variables), provides the pipeline steps the
 * library uses as recording closures, keeps the workspace in memory
 * ({@link #files}), binds credentials from {@link #credentials}, and runs a
 * small interpreter of the declarative {@code pipeline { }} syntax
 * ({@link Declarative}). Every step call is appended to {@link #calls} as a map
 * with at least {@code step} and {@code args}; {@code sh} calls also carry a
 * snapshot of the environment they ran with.
 *
 * Steps implemented: sh, echo, error, unstable, writeFile, readFile, fileExists,
 * withEnv, withCredentials (with string, file, usernamePassword bindings),
 * junit, archiveArtifacts, libraryResource, stage, timeout, dir, pwd, checkout,
 * jobDsl, script, pipeline (declarative), plus the globals env, currentBuild,
 * scm, params. Each is checked against the {@link Catalog} of plugins.txt
 * before it runs (step name, parameters, block), and {@link Cps} checks that
 * what the program keeps across the step is serializable. A call of a name
 * no plugin of plugins.txt defines throws workflow-cps' NoSuchMethodError.
 */
class PipelineHarness {
    /** The repository root: vars/, resources/, Jenkinsfile.d/ are read from here. */
    final File root
    final Binding binding = new Binding()
    /** The build environment (env.X); withEnv and withCredentials overlay it. */
    final Map<String, String> env = new LinkedHashMap<String, String>()
    /** Every recorded step call, in order. */
    final List<Map> calls = []
    /** The in-memory file system (workspace and tmp): absolute path -> content. */
    final Map<String, String> files = new LinkedHashMap<String, String>()
    /** Jenkins credentials by ID: a String (secret text), or [username:, password:], or [file: content]. */
    final Map<String, Object> credentials = [:]
    /** Decides what a sh call does: gets the recorded call, returns an exit code or [rc:, stdout:]. */
    Closure shHandler = { Map call -> 0 }
    final CurrentBuild currentBuild = new CurrentBuild()
    /** The steps and symbols of plugins.txt. */
    final Catalog catalog
    /** The scripts loaded (vars and Jenkinsfiles), whose instance fields CPS serializes. */
    final List<Script> scripts = []
    /** The error that ended the build, if any. */
    Throwable buildError

    static final String WORKSPACE = '/jenkins/workspace/djia30_training'
    static final String WORKSPACE_TMP = WORKSPACE + '@tmp'

    PipelineHarness(File root) {
        this.root = root
        this.catalog = Catalog.of(root)
        Cps.reset()
        org.jenkinsci.plugins.pipeline.modeldefinition.Utils.hook = { String stage -> record('markStageSkippedForConditional', stage) }
        env.putAll([
            WORKSPACE   : WORKSPACE,
            BUILD_NUMBER: '42',
            BUILD_URL   : 'https://jenkins.example.com/job/ml/job/djia30/job/training/42/',
            JOB_NAME    : 'ml/djia30/training',
        ])
        registerSteps()
    }

    /** Loads every vars/*.groovy file as a global variable of the binding. */
    PipelineHarness loadLibrary() {
        new File(root, 'vars').listFiles().findAll { it.name.endsWith('.groovy') }.sort { it.name }.each { File f ->
            binding.setVariable(f.name - '.groovy', new StepVar(f.name - '.groovy', script(f, f.name - '.groovy')))
        }
        return this
    }

    /** Compiled script classes by path and modification time: each file is compiled once per JVM. */
    private static final Map<String, Class> COMPILED = [:]

    /** A new instance of the script in f, bound to this harness. */
    private Script script(File f, String className) {
        String key = f.canonicalPath + '@' + f.lastModified()
        Class c
        synchronized (COMPILED) {
            c = COMPILED[key]
            if (c == null) {
                org.codehaus.groovy.control.CompilerConfiguration cc = new org.codehaus.groovy.control.CompilerConfiguration()
                cc.scriptBaseClass = LibraryScript.name
                cc.addCompilationCustomizers(new CpsTransform())
                c = new GroovyShell(PipelineHarness.classLoader, new Binding(), cc).parse(f.text, className).getClass()
                COMPILED[key] = c
            }
        }
        Script s = org.codehaus.groovy.runtime.InvokerHelper.createScript(c, binding)
        scripts << s
        return s
    }

    /** The non-static fields of the loaded scripts (@Field without static), by script and name. */
    Map<String, Object> scriptFields() {
        Map<String, Object> out = [:]
        scripts.each { Script s ->
            s.getClass().declaredFields.findAll { java.lang.reflect.Field fl ->
                !java.lang.reflect.Modifier.isStatic(fl.modifiers) && !fl.synthetic && !fl.name.startsWith('__') && !fl.name.startsWith('$')
            }.each { java.lang.reflect.Field fl ->
                fl.accessible = true
                out["${s.getClass().simpleName}.${fl.name}".toString()] = fl.get(s)
            }
        }
        return out
    }

    /** Runs a Jenkinsfile (or any pipeline script) and returns the build result. */
    String runJenkinsfile(File f) {
        try {
            // Jenkinsfile names like build-components are not class names.
            script(f, 'Jenkinsfile_' + f.name.replaceAll(/[^A-Za-z0-9]/, '_')).run()
        } catch (PipelineError e) {
            buildError = e
            currentBuild.result = 'FAILURE'
        } catch (FlowInterrupted e) {
            buildError = e
            currentBuild.result = 'ABORTED'
        }
        return currentBuild.result ?: 'SUCCESS'
    }

    /** Calls the global variable (step) name with args, recording a failure as the build's. */
    Object callStep(String name, Object... args) {
        return ((StepVar) binding.getVariable(name)).call(args)
    }

    /** The recorded calls of one step. */
    List<Map> callsOf(String step) { calls.findAll { it.step == step } }

    /** Every secret value of {@link #credentials}, for leak checks. */
    List<String> secretValues() {
        List<String> out = []
        credentials.values().each { v ->
            if (v instanceof Map) { out.addAll(((Map) v).values().collect { it.toString() }) } else { out << v.toString() }
        }
        return out
    }

    /** Deep copy with every GString made a String, so that recorded calls compare by value. */
    static Object plain(Object v) {
        if (v instanceof GString) { return v.toString() }
        if (v instanceof Map) {
            Map out = new LinkedHashMap()
            ((Map) v).each { k, x -> out[plain(k)] = plain(x) }
            return out
        }
        if (v instanceof List) { return ((List) v).collect { plain(it) } }
        return v
    }

    void record(String step, Object args, Map extra = [:]) {
        Map c = [step: step, args: plain(args)]
        c.putAll(extra)
        calls << c
    }

    /** Library resources that stand in for the files under resources/ (path -> text). */
    final Map<String, String> resources = [:]

    private String readResource(String path) {
        if (resources.containsKey(path)) { return resources[path] }
        File f = new File(root, 'resources/' + path)
        if (!f.isFile()) { throw new PipelineError("No such library resource ${path} could be found.") }
        return f.text
    }

    private String abs(String path) {
        if (path.startsWith('/')) { return path }
        String cwd = env.containsKey('__DIR__') ? env['__DIR__'] : WORKSPACE
        return cwd + '/' + path
    }

    private Object withOverlay(Map<String, String> overlay, Closure body) {
        Map<String, String> saved = new LinkedHashMap<String, String>(env)
        overlay.each { k, v ->
            if (k.contains('+')) {
                // PATH+X=dir prepends dir to PATH, as Jenkins' withEnv does.
                String base = k.substring(0, k.indexOf('+'))
                env[base] = v + (env[base] ? ':' + env[base] : '')
            } else {
                env[k] = v
            }
        }
        try {
            return body.call()
        } finally {
            env.clear()
            env.putAll(saved)
        }
    }

    private void registerSteps() {
        PipelineHarness h = this
        binding.setVariable('env', env)
        binding.setVariable('currentBuild', currentBuild)
        binding.setVariable('scm', [$class: 'GitSCM', branch: 'from-multibranch'])
        binding.setVariable('params', [:])

        step('echo') { Object msg -> h.record('echo', msg.toString()) }
        step('error') { Object msg ->
            h.record('error', msg.toString())
            throw new PipelineError(msg.toString())
        }
        step('unstable') { Object msg ->
            h.record('unstable', msg.toString())
            if (h.currentBuild.result == null || h.currentBuild.result == 'SUCCESS') { h.currentBuild.result = 'UNSTABLE' }
        }
        step('sh') { Object a ->
            Map args = (Map) plain(a instanceof Map ? (Map) a : [script: a.toString()])
            Map call = [step: 'sh', args: args, script: args.script, env: new LinkedHashMap(h.env)]
            h.calls << call
            Object out = h.shHandler.call(call)
            int rc = out instanceof Map ? (((Map) out).rc ?: 0) as int : (out ?: 0) as int
            String stdout = out instanceof Map ? (((Map) out).stdout ?: '') : ''
            if (args.returnStatus) { return rc }
            if (rc != 0) { throw new PipelineError("script returned exit code ${rc}") }
            if (args.returnStdout) { return stdout }
            return null
        }
        step('writeFile') { Map a ->
            h.record('writeFile', a)
            h.files[h.abs(a.file as String)] = a.text as String
        }
        step('readFile') { Object a ->
            String path = a instanceof Map ? ((Map) a).file : a.toString()
            h.record('readFile', path)
            String p = h.abs(path)
            if (!h.files.containsKey(p)) { throw new PipelineError("java.nio.file.NoSuchFileException: ${p}") }
            return h.files[p]
        }
        step('fileExists') { Object a ->
            String path = a instanceof Map ? ((Map) a).file : a.toString()
            h.record('fileExists', path)
            return h.files.containsKey(h.abs(path))
        }
        step('pwd') { Object... a ->
            Map args = a.length > 0 && a[0] instanceof Map ? (Map) a[0] : [:]
            return args.tmp ? WORKSPACE_TMP : (h.env['__DIR__'] ?: WORKSPACE)
        }
        step('dir') { String path, Closure body ->
            h.record('dir', path)
            return h.withOverlay([__DIR__: h.abs(path)], body)
        }
        step('withEnv') { List vars, Closure body ->
            h.record('withEnv', vars.collect { it.toString() })
            Map<String, String> overlay = [:]
            vars.each { String kv -> int i = kv.indexOf('='); overlay[kv.substring(0, i)] = kv.substring(i + 1) }
            return h.withOverlay(overlay, body)
        }
        symbol('string') { Map a -> [type: 'string'] + a }
        symbol('file') { Map a -> [type: 'file'] + a }
        symbol('usernamePassword') { Map a -> [type: 'usernamePassword'] + a }
        step('withCredentials') { List bindings, Closure body ->
            h.record('withCredentials', bindings)
            bindings.each { Map b ->
                Map args = new LinkedHashMap(b)
                args.remove('type')
                h.catalog.checkSymbol(b.type as String, args, 'MultiBinding')
            }
            Map<String, String> overlay = [:]
            bindings.each { Map b ->
                if (!h.credentials.containsKey(b.credentialsId)) {
                    throw new PipelineError("Could not find credentials entry with ID '${b.credentialsId}'")
                }
                Object c = h.credentials[b.credentialsId]
                switch (b.type) {
                    case 'string': overlay[b.variable as String] = c as String; break
                    case 'file':
                        String p = WORKSPACE_TMP + '/secretFiles/' + b.credentialsId
                        h.files[p] = (c instanceof Map ? ((Map) c).file : c) as String
                        overlay[b.variable as String] = p
                        break
                    case 'usernamePassword':
                        overlay[b.usernameVariable as String] = ((Map) c).username as String
                        overlay[b.passwordVariable as String] = ((Map) c).password as String
                        break
                    default: throw new PipelineError("unknown binding ${b.type}")
                }
            }
            return h.withOverlay(overlay, body)
        }
        step('junit') { Object a -> h.record('junit', a) }
        step('archiveArtifacts') { Object a -> h.record('archiveArtifacts', a) }
        step('libraryResource') { Object a ->
            String path = a instanceof Map ? ((Map) a).resource : a.toString()
            h.record('libraryResource', path)
            return h.readResource(path)
        }
        step('stage') { String name, Closure body ->
            h.record('stage', name)
            return body.call()
        }
        step('timeout') { Object a, Closure body ->
            h.record('timeout', a)
            return body.call()
        }
        step('checkout') { Object a ->
            h.record('checkout', a)
            return [GIT_COMMIT: h.env.GIT_COMMIT, GIT_BRANCH: h.env.BRANCH_NAME]
        }
        step('jobDsl') { Map a -> h.record('jobDsl', a) }
        step('script') { Closure body -> body.call() }
        global('pipeline') { Closure body -> new Declarative(h).run(body) }
    }

    /** Binds the step name, checked against the catalog and CPS before impl runs. */
    private void step(String name, Closure impl) {
        if (catalog.step(name) == null && catalog.metasteps(name).isEmpty()) {
            throw new IllegalStateException("harness: ${name} is no step of the plugins in plugins.txt")
        }
        binding.setVariable(name, new CheckedStep(this, name, impl))
    }

    /** Binds a symbol that builds a describable value (a credentials binding, say), checked against the catalog. */
    private void symbol(String name, Closure impl) {
        if (catalog.symbols(name).isEmpty()) {
            throw new IllegalStateException("harness: ${name} is no symbol of the plugins in plugins.txt")
        }
        PipelineHarness h = this
        binding.setVariable(name, { Object a -> h.catalog.checkSymbol(name, a); impl.call(a) })
    }

    /** Binds a global variable of the catalog (pipeline). */
    private void global(String name, Closure impl) {
        if (!catalog.isGlobal(name)) {
            throw new IllegalStateException("harness: ${name} is no global variable of the plugins in plugins.txt")
        }
        binding.setVariable(name, impl)
    }

    /** Parses JSON written to the in-memory file system. */
    Object json(String path) {
        return new JsonSlurperClassic().parseText(files[path])
    }
}

/** The error step's exception (hudson.AbortException in Jenkins). */
class PipelineError extends RuntimeException {
    PipelineError(String msg) { super(msg) }
}

/**
 * An aborted build or an expired timeout (Jenkins'
 * org.jenkinsci.plugins.workflow.steps.FlowInterruptedException, which
 * the interrupted step throws; the build ends ABORTED).
 */
class FlowInterrupted extends RuntimeException {
    FlowInterrupted(String msg) { super(msg) }
}

/**
 * currentBuild: the properties of Jenkins' RunWrapper the library uses,
 * each one of RunWrapper's @Whitelisted getters (checked against the
 * catalog by a test). changeSets holds one change set's entries as maps
 * [msg, authorEmail, commitId]; buildCauses the causes' JSON as RunWrapper
 * answers getBuildCauses() ([_class: …, shortDescription: …]).
 */
class CurrentBuild {
    String description
    String result
    String displayName
    List<Map> changeSets = []
    List<Map> buildCauses = [[_class: 'jenkins.branch.BranchEventCause', shortDescription: 'Push event to branch']]

    String getCurrentResult() { result ?: 'SUCCESS' }
}

/**
 * A step bound in the harness: before impl runs, the call is checked
 * against the catalog (Catalog.checkStep) and CPS' rules (Cps.atStep).
 */
class CheckedStep extends Closure {
    final PipelineHarness h
    final String name
    final Closure impl

    CheckedStep(PipelineHarness h, String name, Closure impl) {
        super(null)
        this.h = h
        this.name = name
        this.impl = impl
    }

    Object doCall(Object... args) {
        h.catalog.checkStep(name, args)
        Cps.atStep(name, h.scriptFields())
        return impl.call(*(args as List))
    }
}

/**
 * The base class of the library's scripts in the harness (CpsScript in
 * Jenkins): a call of a name that is neither a method of the script nor a
 * bound step or global fails with workflow-cps' NoSuchMethodError.
 */
abstract class LibraryScript extends Script {
    @Override
    Object invokeMethod(String name, Object args) {
        try {
            return super.invokeMethod(name, args)
        } catch (MissingMethodException e) {
            if (e.method == name && e.type == getClass() && !binding.hasVariable(name)) {
                throw Catalog.of(new File(System.getenv('BRANCHML_REPO_ROOT') ?: '.')).noSuchMethod(name)
            }
            throw e
        }
    }
}

/**
 * A global variable backed by a vars/ script: calling it calls the script's
 * call method, as Jenkins' UserDefinedGlobalVariable does.
 */
class StepVar extends Closure {
    final String name
    final Script script

    StepVar(String name, Script script) {
        super(null)
        this.name = name
        this.script = script
    }

    Object doCall(Object... args) {
        return script.invokeMethod('call', args)
    }
}
