package branchml.harness

import org.codehaus.groovy.ast.ASTNode
import org.codehaus.groovy.ast.AnnotationNode
import org.codehaus.groovy.ast.ClassCodeExpressionTransformer
import org.codehaus.groovy.ast.ClassHelper
import org.codehaus.groovy.ast.ClassNode
import org.codehaus.groovy.ast.MethodNode
import org.codehaus.groovy.ast.Variable
import org.codehaus.groovy.ast.expr.ArgumentListExpression
import org.codehaus.groovy.ast.expr.BinaryExpression
import org.codehaus.groovy.ast.expr.ClassExpression
import org.codehaus.groovy.ast.expr.ClosureExpression
import org.codehaus.groovy.ast.expr.ConstantExpression
import org.codehaus.groovy.ast.expr.DeclarationExpression
import org.codehaus.groovy.ast.expr.Expression
import org.codehaus.groovy.ast.expr.StaticMethodCallExpression
import org.codehaus.groovy.ast.expr.VariableExpression
import org.codehaus.groovy.ast.stmt.BlockStatement
import org.codehaus.groovy.ast.stmt.EmptyStatement
import org.codehaus.groovy.ast.stmt.ExpressionStatement
import org.codehaus.groovy.ast.stmt.TryCatchStatement
import org.codehaus.groovy.classgen.GeneratorContext
import org.codehaus.groovy.control.CompilePhase
import org.codehaus.groovy.control.SourceUnit
import org.codehaus.groovy.control.customizers.CompilationCustomizer
import org.codehaus.groovy.syntax.Types

/**
 * What Pipeline's CPS engine checks when a step suspends the program: every
 * local variable in scope (and every instance field of the script) is
 * serialized with the program, so a value that is not java.io.Serializable
 * (a groovy.json.internal.LazyMap from JsonSlurper, a java.util.regex.Matcher)
 * kept across a step fails the build with java.io.NotSerializableException;
 * and a step may not run inside a @NonCPS method.
 *
 * {@link CpsTransform} instruments the library's methods: each non-@NonCPS
 * method gets a frame, each local declaration and assignment is recorded in
 * it; the harness calls {@link #atStep} before every step. The check is
 * stricter than CPS in one way: a variable stays recorded until its method
 * returns, also after the block that declared it ended.
 */
class Cps {
    private static final ThreadLocal<List<Map>> FRAMES = ThreadLocal.withInitial { [] }
    private static final ThreadLocal<List<String>> NON_CPS = ThreadLocal.withInitial { [] }

    static void enter(String method) { FRAMES.get() << [method: method, vars: new LinkedHashMap<String, Object>()] }

    static void exit() {
        List<Map> f = FRAMES.get()
        if (f) { f.remove(f.size() - 1) }
    }

    static void enterNonCps(String method) { NON_CPS.get() << method }

    static void exitNonCps() {
        List<String> n = NON_CPS.get()
        if (n) { n.remove(n.size() - 1) }
    }

    /** Records a local variable's value in the innermost frame; returns it. */
    static Object keep(String name, Object value) {
        List<Map> f = FRAMES.get()
        if (f && NON_CPS.get().isEmpty()) { ((Map) f.last().vars)[name] = value }
        return value
    }

    static void reset() {
        FRAMES.get().clear()
        NON_CPS.get().clear()
    }

    /**
     * Called before step runs: fails when a @NonCPS method is running, or
     * when a recorded local or one of fields' values does not serialize.
     */
    static void atStep(String step, Map<String, Object> fields = [:]) {
        if (!NON_CPS.get().isEmpty()) {
            throw new CpsError("step ${step} called from the @NonCPS method ${NON_CPS.get().last()}: " +
                'a @NonCPS method may not call steps (it runs outside the CPS engine)')
        }
        for (Map frame in FRAMES.get()) {
            ((Map<String, Object>) frame.vars).each { String name, Object v -> check(v, "local variable '${name}' of ${frame.method}", step) }
        }
        fields.each { String name, Object v -> check(v, "field ${name}", step) }
    }

    private static void check(Object v, String what, String step) {
        if (v == null) { return }
        try {
            new CpsOut().writeObject(v)
        } catch (NotSerializableException e) {
            throw new CpsError("java.io.NotSerializableException: ${e.message} (${what}, kept across the step ${step}; " +
                'keep only Serializable values across steps, e.g. parse JSON with JsonSlurperClassic in a @NonCPS method)')
        }
    }
}

/** An ObjectOutputStream to nowhere that stands in for what CPS serializes its own way. */
@groovy.transform.CompileStatic
class CpsOut extends ObjectOutputStream {
    CpsOut() {
        super(new Nowhere())
        this.enableReplaceObject(true)
    }

    @Override
    protected Object replaceObject(Object obj) {
        // CPS keeps closures and the script as its own serializable
        // objects, env and currentBuild as Serializable wrappers.
        if (obj instanceof Closure || obj instanceof Script || obj instanceof CurrentBuild || obj instanceof PipelineHarness) {
            return null
        }
        return obj
    }
}

/** An OutputStream that drops what it is given. */
class Nowhere extends OutputStream {
    @Override
    void write(int b) {}

    @Override
    void write(byte[] b, int off, int len) {}
}

/** A failure CPS raises outside the script's reach (a script's catch (e) does not catch an Error). */
class CpsError extends Error {
    CpsError(String msg) { super(msg) }
}

/**
 * Instruments every method of the compiled scripts for {@link Cps}: a
 * non-@NonCPS method's body runs between Cps.enter and Cps.exit and records
 * its local declarations and assignments with Cps.keep; a @NonCPS method's
 * body runs between Cps.enterNonCps and Cps.exitNonCps.
 */
class CpsTransform extends CompilationCustomizer {
    private static final ClassNode CPS = ClassHelper.make(Cps)

    CpsTransform() { super(CompilePhase.CANONICALIZATION) }

    @Override
    void call(SourceUnit source, GeneratorContext context, ClassNode classNode) {
        for (MethodNode m in classNode.methods) {
            if (m.isAbstract() || m.code == null || m.isSynthetic() || m.name.contains('$')) { continue }
            boolean nonCps = m.annotations.any { AnnotationNode a -> a.classNode.nameWithoutPackage == 'NonCPS' }
            if (!nonCps) {
                new Keeper(source).visitMethod(m)
            }
            String name = "${classNode.nameWithoutPackage}.${m.name}"
            m.code = wrap(m.code, nonCps ? 'enterNonCps' : 'enter', nonCps ? 'exitNonCps' : 'exit', name,
                nonCps ? [] : (m.parameters as List))
        }
    }

    private static BlockStatement wrap(org.codehaus.groovy.ast.stmt.Statement body, String enter, String exit, String name,
                                       List<org.codehaus.groovy.ast.Parameter> params) {
        BlockStatement b = new BlockStatement()
        b.addStatement(new ExpressionStatement(call(enter, new ConstantExpression(name))))
        for (org.codehaus.groovy.ast.Parameter p in params) {
            VariableExpression v = new VariableExpression(p)
            b.addStatement(new ExpressionStatement(call('keep', new ConstantExpression(p.name), v)))
        }
        TryCatchStatement t = new TryCatchStatement(body, new ExpressionStatement(call(exit)))
        b.addStatement(t)
        b.variableScope = body instanceof BlockStatement ? ((BlockStatement) body).variableScope : null
        return b
    }

    static StaticMethodCallExpression call(String method, Expression... args) {
        return new StaticMethodCallExpression(CPS, method, new ArgumentListExpression(args))
    }

    /** Rewrites `def x = e` and `x = e` (x a local variable) into Cps.keep('x', e). */
    private static class Keeper extends ClassCodeExpressionTransformer {
        final SourceUnit source

        Keeper(SourceUnit source) { this.source = source }

        @Override
        protected SourceUnit getSourceUnit() { source }

        @Override
        Expression transform(Expression e) {
            if (e instanceof ClosureExpression) {
                ((ClosureExpression) e).code.visit(this)
                return e
            }
            if (e instanceof DeclarationExpression && !((DeclarationExpression) e).isMultipleAssignmentDeclaration()) {
                DeclarationExpression d = (DeclarationExpression) e
                VariableExpression v = d.variableExpression
                Expression right = transform(d.rightExpression)
                if (right instanceof org.codehaus.groovy.ast.expr.EmptyExpression) { return d }
                DeclarationExpression out = new DeclarationExpression(v, d.operation, call('keep', new ConstantExpression(v.name), right))
                out.sourcePosition = d
                return out
            }
            if (e instanceof BinaryExpression && ((BinaryExpression) e).operation.type == Types.ASSIGN &&
                ((BinaryExpression) e).leftExpression instanceof VariableExpression) {
                BinaryExpression b = (BinaryExpression) e
                VariableExpression v = (VariableExpression) b.leftExpression
                Variable acc = v.accessedVariable
                boolean local = acc instanceof VariableExpression || acc instanceof org.codehaus.groovy.ast.Parameter
                if (local) {
                    BinaryExpression out = new BinaryExpression(v, b.operation, call('keep', new ConstantExpression(v.name), transform(b.rightExpression)))
                    out.sourcePosition = b
                    return out
                }
            }
            return e.transformExpression(this)
        }
    }
}
