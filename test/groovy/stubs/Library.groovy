import java.lang.annotation.ElementType
import java.lang.annotation.Retention
import java.lang.annotation.RetentionPolicy
import java.lang.annotation.Target

/**
 * Compile-time stand-in for Jenkins' org.jenkinsci.plugins.workflow.libs.Library
 * annotation, so that groovyc can compile Jenkinsfiles that start with
 * {@code @Library('branchml') _}. Only scripts/groovy-test.sh uses it.
 */
@Retention(RetentionPolicy.RUNTIME)
@Target([ElementType.PACKAGE, ElementType.TYPE, ElementType.METHOD, ElementType.CONSTRUCTOR,
        ElementType.FIELD, ElementType.LOCAL_VARIABLE, ElementType.PARAMETER, ElementType.ANNOTATION_TYPE])
@interface Library {
    String[] value()
    boolean changelog() default true
}
