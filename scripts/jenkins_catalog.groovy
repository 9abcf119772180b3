// jenkins_catalog.groovy: generates test/groovy/catalog/jenkins.json, the
// catalog of the Jenkins steps, describable symbols and global variables
// that the plugins pinned in plugins.txt (and the Jenkins core named there)
// provide, with their parameters. The Groovy test harness
// (test/groovy/harness) rejects a step, symbol or parameter that is not in
// it, so that a call into a plugin missing from plugins.txt fails the tests.
//
// It reads only signatures from the plugins' Java sources at the pinned
// release tags: @Symbol (on a class or its nested descriptor),
// StepDescriptor.getFunctionName() and takesImplicitBlockArgument(),
// @DataBoundConstructor parameters (required), @DataBoundSetter methods and
// fields (optional, inherited), the names of GlobalVariable subclasses,
// and the @Whitelisted getters of RunWrapper (currentBuild).
//
//   scripts/jenkins-catalog.sh SOURCES
//   (or: groovy scripts/jenkins_catalog.groovy SOURCES [plugins.txt] [out.json])
//
// SOURCES is a directory with one git repository per source repository,
// as "<repo>.git" (bare, e.g. git clone --bare
// https://github.com/jenkinsci/<repo>) or "<repo>/" (a clone), holding the
// release tags. scripts/jenkins-catalog.sh runs it with Debian's Groovy.

import groovy.json.JsonOutput

// artifactId -> source repository under github.com/jenkinsci and the
// folders of its Java sources ("" = the repository root).
Map<String, Map> SOURCES = [
    'jenkins-core'                 : [repo: 'jenkins', roots: ['core/'], tag: { v -> "jenkins-${v}" }],
    'workflow-basic-steps'         : [repo: 'workflow-basic-steps-plugin'],
    'workflow-durable-task-step'   : [repo: 'workflow-durable-task-step-plugin'],
    'workflow-cps'                 : [repo: 'workflow-cps-plugin', roots: ['plugin/']],
    'workflow-job'                 : [repo: 'workflow-job-plugin'],
    'workflow-multibranch'         : [repo: 'workflow-multibranch-plugin'],
    'workflow-scm-step'            : [repo: 'workflow-scm-step-plugin'],
    'workflow-support'             : [repo: 'workflow-support-plugin'],
    'pipeline-model-definition'    : [repo: 'pipeline-model-definition-plugin',
                                      roots: ['pipeline-model-definition/', 'pipeline-model-extensions/', 'pipeline-model-api/']],
    'pipeline-stage-step'          : [repo: 'pipeline-stage-step-plugin'],
    'pipeline-groovy-lib'          : [repo: 'pipeline-groovy-lib-plugin'],
    'credentials'                  : [repo: 'credentials-plugin'],
    'credentials-binding'          : [repo: 'credentials-binding-plugin'],
    'plain-credentials'            : [repo: 'plain-credentials-plugin'],
    'junit'                        : [repo: 'junit-plugin'],
    'job-dsl'                      : [repo: 'job-dsl-plugin', roots: ['job-dsl-plugin/']],
    'kubernetes'                   : [repo: 'kubernetes-plugin'],
    'git'                          : [repo: 'git-plugin', tag: { v -> "git-${v}" }],
    'github-branch-source'         : [repo: 'github-branch-source-plugin'],
    'branch-api'                   : [repo: 'branch-api-plugin'],
    'scm-api'                      : [repo: 'scm-api-plugin'],
    'cloudbees-folder'             : [repo: 'cloudbees-folder-plugin'],
    'basic-branch-build-strategies': [repo: 'basic-branch-build-strategies-plugin'],
    'ignore-committer-strategy'    : [repo: 'ignore-committer-strategy-plugin'],
    'configuration-as-code'        : [repo: 'configuration-as-code-plugin'],
    'script-security'              : [repo: 'script-security-plugin'],
    'structs'                      : [repo: 'structs-plugin'],
]

if (args.length < 1) {
    System.err.println('usage: groovy scripts/jenkins_catalog.groovy SOURCES [plugins.txt] [out.json]')
    System.exit(2)
}
File sourcesDir = new File(args[0])
File pluginsFile = new File(args.length > 1 ? args[1] : 'plugins.txt')
File outFile = new File(args.length > 2 ? args[2] : 'test/groovy/catalog/jenkins.json')

// plugins.txt: "artifactId:version" lines; "# jenkins-version: X" names the core.
Map<String, String> pins = [:]
String coreVersion = null
pluginsFile.eachLine { String line ->
    def m = line =~ /^#\s*jenkins-version:\s*(\S+)/
    if (m.find()) { coreVersion = m.group(1) }
    String l = line.replaceAll(/#.*/, '').trim()
    if (l) {
        List parts = l.split(':') as List
        if (parts.size() < 2) { throw new IllegalArgumentException("${pluginsFile}: '${line}' is not artifactId:version") }
        pins[parts[0]] = parts[1]
    }
}
if (!coreVersion) { throw new IllegalArgumentException("${pluginsFile}: no '# jenkins-version: X' line") }
pins['jenkins-core'] = coreVersion

/** The git directory of repo under SOURCES. */
File gitDir(File sources, String repo) {
    for (File f in [new File(sources, repo + '.git'), new File(sources, repo + '/.git'), new File(sources, repo)]) {
        if (new File(f, 'HEAD').isFile() && new File(f, 'objects').isDirectory()) { return f }
    }
    throw new FileNotFoundException("no git repository ${repo}.git or ${repo}/ in ${sources}; clone https://github.com/jenkinsci/${repo} there")
}

String git(File dir, List<String> cmd) {
    Process p = (['git', '--git-dir=' + dir.path] + cmd).execute()
    StringBuilder out = new StringBuilder(), err = new StringBuilder()
    p.waitForProcessOutput(out, err)
    if (p.exitValue() != 0) { throw new IOException("git ${cmd.join(' ')} in ${dir}: ${err}") }
    return out.toString()
}

/** Reads many blobs through one `git cat-file --batch`. */
Map<String, String> readBlobs(File dir, String tag, List<String> paths) {
    Process p = ['git', '--git-dir=' + dir.path, 'cat-file', '--batch'].execute()
    Map<String, String> out = [:]
    Thread writer = Thread.start {
        p.outputStream.withWriter('UTF-8') { w -> paths.each { w.write("${tag}:${it}\n") } }
    }
    DataInputStream input = new DataInputStream(new BufferedInputStream(p.inputStream))
    for (String path in paths) {
        StringBuilder header = new StringBuilder()
        int c
        while ((c = input.read()) != '\n'.charAt(0) && c >= 0) { header.append((char) c) }
        List h = header.toString().split(' ') as List
        if (h.size() < 3 || h[1] != 'blob') { throw new IOException("git cat-file ${tag}:${path}: ${header}") }
        byte[] buf = new byte[h[2] as int]
        input.readFully(buf)
        input.read()
        out[path] = new String(buf, 'UTF-8')
    }
    writer.join()
    p.waitFor()
    return out
}

/**
 * Java source with comments blanked and string literals replaced by
 * "\u0001<n>\u0001" markers (strings[n] holds the literal's text), so that
 * braces and annotations can be found with regular expressions.
 */
class Cleaned {
    String code
    List<String> strings = []

    Cleaned(String src) {
        StringBuilder b = new StringBuilder(src.length())
        int i = 0
        int n = src.length()
        while (i < n) {
            char ch = src.charAt(i)
            if (ch == '/' && i + 1 < n && src.charAt(i + 1) == '/') {
                while (i < n && src.charAt(i) != '\n') { i++ }
            } else if (ch == '/' && i + 1 < n && src.charAt(i + 1) == '*') {
                int end = src.indexOf('*/', i + 2)
                i = end < 0 ? n : end + 2
                b.append(' ')
            } else if (ch == '"' && src.startsWith('"""', i)) {
                int end = src.indexOf('"""', i + 3)
                strings << src.substring(i + 3, end < 0 ? n : end)
                b.append('"\u0001').append(strings.size() - 1).append('\u0001"')
                i = end < 0 ? n : end + 3
            } else if (ch == '"' || ch == '\'') {
                int j = i + 1
                StringBuilder s = new StringBuilder()
                while (j < n && src.charAt(j) != ch) {
                    if (src.charAt(j) == '\\' && j + 1 < n) { s.append(src.charAt(j + 1)); j += 2 } else { s.append(src.charAt(j)); j++ }
                }
                if (ch == '"') {
                    strings << s.toString()
                    b.append('"\u0001').append(strings.size() - 1).append('\u0001"')
                } else {
                    b.append("'x'")
                }
                i = j + 1
            } else {
                b.append(ch)
                i++
            }
        }
        code = b.toString()
    }

    /** The text of a marker "\u0001n\u0001" (quotes included or not). */
    String text(String marker) {
        def m = marker =~ /\u0001(\d+)\u0001/
        return m.find() ? strings[m.group(1) as int] : null
    }

    List<String> texts(String s) {
        List<String> out = []
        def m = s =~ /\u0001(\d+)\u0001/
        while (m.find()) { out << strings[m.group(1) as int] }
        return out
    }
}

/** Splits a parameter list at top-level commas. */
List<String> splitParams(String s) {
    List<String> out = []
    int depth = 0
    StringBuilder cur = new StringBuilder()
    for (char c in s.toCharArray()) {
        if (c == '<' || c == '(') { depth++ } else if (c == '>' || c == ')') { depth-- }
        if (c == ',' && depth == 0) { out << cur.toString(); cur = new StringBuilder() } else { cur.append(c) }
    }
    if (cur.toString().trim()) { out << cur.toString() }
    return out
}

/** [name, type] of one Java parameter declaration. */
List<String> param(String decl) {
    String d = decl.replaceAll(/@[\w.]+(\s*\([^)]*\))?/, ' ').replaceAll(/\bfinal\b/, ' ').trim()
    def m = d =~ /^(.*?)\s*(\.\.\.)?\s*(\w+)$/
    if (!m.find()) { return null }
    String type = m.group(1).replaceAll(/\s+/, ' ').trim() + (m.group(2) ?: '')
    return [m.group(3), type]
}

/** Introspector.decapitalize of a setter's property. */
String property(String setter) {
    String p = setter.substring(3)
    if (p.length() > 1 && Character.isUpperCase(p.charAt(0)) && Character.isUpperCase(p.charAt(1))) { return p }
    return Character.toLowerCase(p.charAt(0)).toString() + p.substring(1)
}

/** The end index of the balanced (...) starting at open. */
int closeParen(String s, int open) {
    int depth = 0
    for (int i = open; i < s.length(); i++) {
        if (s.charAt(i) == '(') { depth++ }
        if (s.charAt(i) == ')') { depth--; if (depth == 0) { return i } }
    }
    return -1
}

/** The end index of the balanced {...} starting at open. */
int closeBrace(String s, int open) {
    int depth = 0
    for (int i = open; i < s.length(); i++) {
        if (s.charAt(i) == '{') { depth++ }
        if (s.charAt(i) == '}') { depth--; if (depth == 0) { return i } }
    }
    return s.length() - 1
}

/**
 * The classes of one source file: name, fqcn, outer, extends/implements
 * (simple names), annotations text, body range, and the members found in
 * the body (ctor params, setters, function name, block, symbols).
 */
List<Map> parseFile(String plugin, String path, String src) {
    Cleaned c = new Cleaned(src)
    String code = c.code
    String pkg = (code =~ /\bpackage\s+([\w.]+)\s*;/).with { it.find() ? it.group(1) : '' }
    Map<String, String> imports = [:]
    (code =~ /\bimport\s+(?:static\s+)?([\w.]+)\s*;/).each { all, String fq -> imports[fq.tokenize('.').last()] = fq }
    List<Map> classes = []
    def decl = code =~ /(?m)((?:@[\w.]+(?:\s*\([^)]*\))?\s*|\b(?:public|protected|private|static|final|abstract|sealed|non-sealed|strictfp)\s+)*)\b(class|interface|enum|record)\s+(\w+)\s*(<[^{]*?>)?\s*(?:\([^)]*\))?\s*(?:extends\s+([^{]*?))?\s*(?:implements\s+([^{]*?))?\s*(?:permits\s+[^{]*?)?\{/
    while (decl.find()) {
        int open = decl.end() - 1
        String mods = decl.group(1) ?: ''
        List<String> ext = (decl.group(5) ?: '').replaceAll(/<[^<>]*(<[^<>]*>[^<>]*)*>/, '').split(',').collect { it.trim().tokenize('.') }.findAll { it }.collect { it.last() }
        List<String> impl = (decl.group(6) ?: '').replaceAll(/<[^<>]*(<[^<>]*>[^<>]*)*>/, '').split(',').collect { it.trim().tokenize('.') }.findAll { it }.collect { it.last() }
        Map k = [name: decl.group(3), kind: decl.group(2), start: decl.start(3), open: open, close: closeBrace(code, open),
                 ext: ext, impl: impl, symbols: [], plugin: plugin, path: path, pkg: pkg, imports: imports,
                 ctor: null, setters: [:], describes: null, functionName: null, block: false, globalName: null, whitelisted: []]
        def sym = mods =~ /@Symbol\s*\(([^)]*)\)/
        if (sym.find()) { k.symbols = c.texts(sym.group(1)) }
        k.deprecated = mods.contains('@Deprecated')
        classes << k
    }
    // Outer classes and fully qualified names.
    classes.each { Map k ->
        Map outer = classes.findAll { it != k && it.open < k.start && it.close > k.open }.max { it.open }
        k.outer = outer
    }
    classes.each { Map k ->
        List<String> names = []
        for (Map o = k; o != null; o = o.outer) { names.add(0, o.name) }
        k.fqcn = (pkg ? pkg + '.' : '') + names.join('$')
        k.simple = names.join('.')
    }
    /** The innermost class whose body holds position pos. */
    Closure owner = { int pos -> classes.findAll { it.open < pos && it.close > pos }.max { it.open } }

    def ctor = code =~ /@DataBoundConstructor\b/
    while (ctor.find()) {
        Map k = owner(ctor.start())
        if (k == null) { continue }
        // The constructor's name follows, maybe after other annotations with arguments.
        def name = code.substring(ctor.end()) =~ /\b${k.name}\s*\(/
        if (!name.find()) { continue }
        int open = ctor.end() + name.end() - 1
        String list = code.substring(open + 1, closeParen(code, open))
        k.ctor = splitParams(list).collect { param(it) }.findAll { it }
    }
    def setter = code =~ /@DataBoundSetter\b((?:\s*@[\w.]+(?:\s*\([^)]*\))?|\s*\b(?:public|protected|private|static|final|synchronized|transient|volatile)\b)*)\s*([\w.<>\[\]?, ]+?)\s+(\w+)\s*(\(|=|;)/
    while (setter.find()) {
        Map k = owner(setter.start())
        if (k == null) { continue }
        String name = setter.group(3)
        if (setter.group(4) == '(') {
            int open = setter.end() - 1
            List ps = splitParams(code.substring(open + 1, closeParen(code, open))).collect { param(it) }.findAll { it }
            if (name.startsWith('set') && name.length() > 3 && ps.size() == 1) { k.setters[property(name)] = ps[0][1] }
        } else {
            k.setters[name] = setter.group(2).trim()
        }
    }
    def fn = code =~ /\bString\s+getFunctionName\s*\(\s*\)\s*\{\s*return\s+("\u0001\d+\u0001")\s*;/
    while (fn.find()) {
        Map k = owner(fn.start())
        if (k) { k.functionName = c.text(fn.group(1)) }
    }
    def block = code =~ /\bboolean\s+takesImplicitBlockArgument\s*\(\s*\)\s*\{\s*return\s+true\s*;/
    while (block.find()) {
        Map k = owner(block.start())
        if (k) { k.block = true }
    }
    def sup = code =~ /\bsuper\s*\(\s*(\w+)\.class\b/
    while (sup.find()) {
        Map k = owner(sup.start())
        if (k && !k.describes) { k.describes = sup.group(1) }
    }
    Map<String, String> constants = [:]
    (code =~ /\bstatic\s+final\s+String\s+(\w+)\s*=\s*("\u0001\d+\u0001")\s*;/).each { all, String n, String v -> constants[n] = c.text(v) }
    def gv = code =~ /\bString\s+getName\s*\(\s*\)\s*\{\s*return\s+("\u0001\d+\u0001"|\w+)\s*;/
    while (gv.find()) {
        Map k = owner(gv.start())
        if (k) { k.globalName = gv.group(1).startsWith('"') ? c.text(gv.group(1)) : constants[gv.group(1)] }
    }
    def wl = code =~ /@Whitelisted\b[^;{(]*?\b(?:get|is)(\w+)\s*\(\s*\)/
    while (wl.find()) {
        Map k = owner(wl.start())
        if (k) { k.whitelisted << property('set' + wl.group(1)) }
    }
    return classes
}

Map<String, Map> byFqcn = [:]
Map<String, List<Map>> bySimple = [:].withDefault { [] }
Map<String, String> versions = [:]
List<String> warnings = []

pins.keySet().sort().each { String artifact ->
    Map src = SOURCES[artifact]
    if (src == null) {
        warnings << "${artifact}: no source repository known; its steps are not in the catalog".toString()
        return
    }
    File dir = gitDir(sourcesDir, src.repo as String)
    String version = pins[artifact]
    List<String> candidates = src.tag ? [(src.tag as Closure).call(version).toString()] : [version, "${artifact}-${version}".toString()]
    String tag = candidates.find { git(dir, ['tag', '--list', it]).trim() == it }
    if (!tag) { throw new IllegalStateException("${artifact}:${version}: no tag ${candidates.join(' or ')} in ${dir}") }
    versions[artifact] = version
    List<String> roots = (src.roots ?: ['']) as List<String>
    List<String> wanted = git(dir, ['ls-tree', '-r', '--name-only', tag]).readLines().findAll { String p ->
        (p.endsWith('.java') || p.endsWith('.groovy')) && roots.any { p.startsWith(it + 'src/main/java/') || p.startsWith(it + 'src/main/groovy/') }
    }
    readBlobs(dir, tag, wanted).each { String path, String text ->
        parseFile(artifact, path, text).each { Map k ->
            byFqcn[k.fqcn] = k
            bySimple[k.name] << k
        }
    }
}

/** The class a simple name in k's file refers to. */
Map resolve(Map k, String name, Map<String, Map> byFqcn, Map<String, List<Map>> bySimple) {
    if (k.imports[name] && byFqcn[k.imports[name]]) { return byFqcn[k.imports[name]] }
    List<Map> c = bySimple[name]
    return c.find { it.pkg == k.pkg } ?: (c.size() == 1 ? c[0] : null)
}

/** Every ancestor's simple name (resolved transitively where the source is known). */
List<String> ancestors(Map k, Map<String, Map> byFqcn, Map<String, List<Map>> bySimple, Set<String> seen = [] as Set) {
    List<String> out = []
    for (String n in (k.ext + k.impl)) {
        if (!seen.add(n)) { continue }
        out << n
        Map a = resolve(k, n, byFqcn, bySimple)
        if (a) { out.addAll(ancestors(a, byFqcn, bySimple, seen)) }
    }
    return out
}

/** Setters of k and of its resolvable superclasses. */
Map<String, String> allSetters(Map k, Map<String, Map> byFqcn, Map<String, List<Map>> bySimple, Set<String> seen = [] as Set) {
    Map<String, String> out = [:]
    for (String n in k.ext) {
        Map a = resolve(k, n, byFqcn, bySimple)
        if (a && seen.add(a.fqcn)) { out.putAll(allSetters(a, byFqcn, bySimple, seen)) }
    }
    out.putAll(k.setters)
    return out
}

Map paramsOf(Map k, Map<String, Map> byFqcn, Map<String, List<Map>> bySimple) {
    Map out = new TreeMap()
    (k.ctor ?: []).each { List p -> out[p[0]] = [type: p[1], required: true] }
    allSetters(k, byFqcn, bySimple).each { String n, String t -> if (!out[n]) { out[n] = [type: t] } }
    return out
}

Map steps = new TreeMap()
Map describables = new TreeMap()
Map globals = new TreeMap()
List runWrapper = []

byFqcn.values().sort { it.fqcn }.each { Map k ->
    // A nested descriptor's function name and symbols belong to its outer describable.
    boolean isDescriptor = ancestors(k, byFqcn, bySimple).any { it.endsWith('Descriptor') || it == 'Descriptor' }
    // A top-level descriptor names its describable: super(Foo.class).
    Map target = isDescriptor && k.outer ? k.outer : k
    if (isDescriptor && k.describes) { target = resolve(k, k.describes, byFqcn, bySimple) ?: target }
    if (k.functionName) {
        if (steps[k.functionName] && steps[k.functionName].plugin != target.plugin) {
            warnings << "step ${k.functionName} is defined by ${steps[k.functionName].class} and ${target.fqcn}".toString()
        }
        steps[k.functionName] = [plugin: target.plugin, class: target.fqcn, block: k.block, params: paramsOf(target, byFqcn, bySimple)]
    }
    for (String s in k.symbols) {
        List list = describables[s] ?: []
        if (!list.any { it.class == target.fqcn }) {
            list << [plugin: target.plugin, class: target.fqcn, kinds: ancestors(target, byFqcn, bySimple).unique(),
                     params: paramsOf(target, byFqcn, bySimple)]
        }
        describables[s] = list.sort { it.class }
    }
    if (k.globalName && ancestors(k, byFqcn, bySimple).contains('GlobalVariable')) {
        globals[k.globalName] = [plugin: k.plugin, class: k.fqcn]
    }
    if (k.fqcn == 'org.jenkinsci.plugins.workflow.support.steps.build.RunWrapper') {
        runWrapper = k.whitelisted.unique().sort()
    }
}
// The plugins whose describables the seed script (jobs/multibranch.groovy) uses
// through Job DSL's dynamic DSL.
List<String> JOB_DSL_PLUGINS = ['branch-api', 'basic-branch-build-strategies', 'ignore-committer-strategy', 'github-branch-source',
                                'scm-api', 'cloudbees-folder', 'workflow-multibranch']

// Job DSL's dynamic DSL names a describable without @Symbol by its
// uncapitalized class name (DescribableHelper.uncapitalize).
byFqcn.values().findAll { Map k -> !k.outer && k.ctor != null && !k.symbols && !byFqcn.values().any { it.outer == k && it.symbols } }.each { Map k ->
    List kinds = ancestors(k, byFqcn, bySimple).unique()
    if (k.plugin in JOB_DSL_PLUGINS) {
        String name = Character.toLowerCase(k.name.charAt(0)).toString() + k.name.substring(1)
        List list = describables[name] ?: []
        list << [plugin: k.plugin, class: k.fqcn, kinds: kinds, params: paramsOf(k, byFqcn, bySimple), jobDslOnly: true]
        describables[name] = list
    }
}

Map catalog = [
    about       : 'Generated by scripts/jenkins-catalog.sh from the sources of the plugins in plugins.txt at their release tags ' +
        '(signatures only: @Symbol, getFunctionName, @DataBoundConstructor, @DataBoundSetter, GlobalVariable, RunWrapper @Whitelisted). Do not edit.',
    versions    : new TreeMap(versions),
    steps       : steps,
    describables: describables,
    globals     : globals,
    currentBuild: runWrapper,
    warnings    : warnings.sort(),
]
outFile.parentFile.mkdirs()
outFile.text = JsonOutput.prettyPrint(JsonOutput.toJson(catalog)) + '\n'
System.err.println("jenkins-catalog: ${steps.size()} steps, ${describables.size()} symbols, ${globals.size()} globals from ${versions.size()} sources -> ${outFile}")
warnings.each { System.err.println("jenkins-catalog: warning: ${it}") }
