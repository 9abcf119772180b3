package branchml.harness

import org.codehaus.groovy.control.CompilerConfiguration

/**
 * Runs Job DSL scripts against a recording DSL: every method call becomes a
 * {@link DslNode} (its name, its non-closure arguments, and the nodes its
 * closure argument made), whatever the method is, as the Job DSL plugin's
 * dynamic API would accept it. The tree renders as indented text for golden
 * tests. Top-level: readFileFromWorkspace reads from the repository root.
 */
class JobDslRecorder {
    final File workspace
    final DslNode root = new DslNode('<root>', [])

    JobDslRecorder(File workspace) { this.workspace = workspace }

    /** Runs the script file and returns the root of the recorded tree. */
    DslNode run(File script) {
        CompilerConfiguration cc = new CompilerConfiguration()
        cc.scriptBaseClass = DslScript.name
        Binding b = new Binding()
        GroovyShell shell = new GroovyShell(JobDslRecorder.classLoader, b, cc)
        DslScript s = (DslScript) shell.parse(script.text, script.name.replaceAll(/[^A-Za-z0-9]/, '_'))
        s.setRecorder(this) // a plain assignment would land in the binding
        s.run()
        return root
    }
}

/** One recorded DSL call. */
class DslNode {
    final String name
    final List args
    final List<DslNode> children = []

    DslNode(String name, List args) {
        this.name = name
        this.args = args
    }

    /** The first descendant (depth first, self included) with this name path, e.g. 'github/traits'. */
    DslNode find(String path) {
        List<String> names = path.split('/') as List
        DslNode n = this
        for (String want in names) {
            n = n.descendant(want)
            if (n == null) { return null }
        }
        return n
    }

    private DslNode descendant(String want) {
        for (DslNode c in children) {
            if (c.name == want) { return c }
            DslNode d = c.descendant(want)
            if (d != null) { return d }
        }
        return null
    }

    /** The single argument of the child named name (for leaf calls like id('x')). */
    Object value(String name) {
        DslNode c = children.find { it.name == name }
        return c?.args?.size() == 1 ? c.args[0] : c?.args
    }

    String render(String indent = '') {
        StringBuilder sb = new StringBuilder()
        children.each { DslNode c ->
            sb.append(indent).append(c.name)
            if (c.args || !c.children) {
                sb.append('(').append(c.args.collect { renderArg(it) }.join(', ')).append(')')
            }
            if (c.children) {
                sb.append(' {\n').append(c.render(indent + '    ')).append(indent).append('}')
            }
            sb.append('\n')
        }
        return sb.toString()
    }

    private static String renderArg(Object a) {
        if (a instanceof CharSequence) { return "'" + a.toString().replace("'", "\\'") + "'" }
        if (a instanceof Map) { return '[' + ((Map) a).collect { k, v -> "${k}: ${renderArg(v)}" }.join(', ') + ']' }
        return String.valueOf(a)
    }
}

/** A DSL context: records every call made on it (via its closure's delegate). */
class DslContext {
    final DslNode node

    DslContext(DslNode node) { this.node = node }

    def methodMissing(String name, Object args) {
        Object[] a = (Object[]) args
        List plain = a.findAll { !(it instanceof Closure) }.collect { it instanceof GString ? it.toString() : it }
        DslNode child = new DslNode(name, plain)
        node.children << child
        Closure body = (Closure) a.find { it instanceof Closure }
        if (body != null) {
            body.resolveStrategy = Closure.DELEGATE_FIRST
            body.delegate = new DslContext(child)
            body.call()
        }
        return child
    }
}

/** The base class of Job DSL scripts under test (javaposse.jobdsl.dsl.JobParent in Jenkins). */
abstract class DslScript extends Script {
    JobDslRecorder recorder

    String readFileFromWorkspace(String path) {
        return new File(recorder.workspace, path).text
    }

    def methodMissing(String name, Object args) {
        return new DslContext(recorder.root).methodMissing(name, args)
    }
}

/**
 * Checks the describables of a recorded Job DSL tree against the catalog,
 * as Job DSL's dynamic DSL resolves them (DescribableContext): below each
 * node named in roots, a node is a describable symbol (or an uncapitalized
 * class name) whose children are its parameters; a parameter given a block
 * holds describables again (a single one, or a list's elements). Job DSL's
 * own built-in contexts (multibranchPipelineJob, branchSources, …) are not
 * in the catalog and not checked. Left-out constructor parameters are
 * null in Job DSL as in structs, so they are not required here.
 */
class DslCheck {
    static List<String> check(DslNode root, Catalog c, List<String> roots = ['branchSource', 'workflowBranchProjectFactory', 'periodicFolderTrigger']) {
        List<String> problems = []
        walk(root, '', c, roots, problems)
        return problems
    }

    private static void walk(DslNode n, String path, Catalog c, List<String> roots, List<String> problems) {
        n.children.each { DslNode ch ->
            String p = path ? path + '/' + ch.name : ch.name
            if (n.name == '<root>') { p = ch.name }
            if (ch.name in roots) {
                String bad = describable(ch, p, c)
                if (bad) { problems << bad }
            } else {
                walk(ch, p, c, roots, problems)
            }
        }
    }

    /** null when n is a describable whose children fit its parameters, else why not. */
    private static String describable(DslNode n, String path, Catalog c) {
        List<Map> cands = c.symbols(n.name)
        if (cands.isEmpty()) {
            return "${path}: ${n.name} is no describable of the plugins in plugins.txt"
        }
        List<String> why = []
        for (Map d in cands) {
            Map params = (Map) d.params
            List<String> bad = []
            n.children.each { DslNode ch ->
                if (!params.containsKey(ch.name)) {
                    bad << "${path}: ${ch.name} is no parameter of ${d.class} (${params.keySet().join(', ')})".toString()
                    return
                }
                ch.children.each { DslNode v ->
                    String b = describable(v, "${path}/${ch.name}/${v.name}", c)
                    if (b) { bad << b }
                }
            }
            if (bad.isEmpty()) { return null }
            why.addAll(bad)
        }
        return why.unique().join('; ')
    }
}
