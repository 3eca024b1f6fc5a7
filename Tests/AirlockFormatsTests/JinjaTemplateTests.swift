@testable import AirlockFormats
import Testing

/// The template analyser on its own: what it evaluates, and that hostile shapes end in a bounded answer.
@Suite("Jinja template analyser")
struct JinjaTemplateTests {
    func kinds(_ t: String) -> Set<String> { Set(JinjaTemplate.analyse(Array(t.utf8)).map(\.kind)) }

    @Test(
        "names built from pieces are evaluated",
        arguments: [
            #"{{ x|attr("__glob" ~ "als__") }}"#, #"{{ x|attr(("_" * 2) + "globals" + "_" * 2) }}"#,
            #"{{ x|attr("%c%cglobals%c%c"|format(95, 95, 95, 95)) }}"#, #"{{ x|attr(["__glo", "bals__"]|join) }}"#,
            #"{{ x|attr("__slabolg__"|reverse) }}"#, #"{{ x|attr("..globals.."|replace(".", "_")) }}"#,
            #"{{ x|attr("x__globals__x"[1:-1]) }}"#, #"{{ x|attr("__GLOBALS__"|lower) }}"#,
            #"{{ x|attr('\x5f\x5fglobals\x5f\x5f') }}"#, #"{{ x|attr('\137\137globals\137\137') }}"#,
            #"{{ x|attr('\u005f\u005fglobals\U0000005f\u005f') }}"#,
            #"{% set a = "__glo" %}{% set b = a ~ "bals__" %}{{ x|attr(b) }}"#,
            #"{{ x|attr(("__glo" if y else "zz") ~ "bals__") }}"#, #"{{ x[("__glo" or "q") ~ "bals__"] }}"#,
            #"{{ x|attr("{}bals__".format("__glo")) }}"#, #"{{ x|attr("__globals__,y".split(",")|first) }}"#,
            #"{{ x|attr("__glo" "bals__") }}"#, #"{% set ns = namespace(a="__glo" ~ "bals__") %}{{ x[ns.a] }}"#,
            #"{{ dict(k=["__glo", "bals__"]|join) }}"#,
            #"{% set ns = namespace() %}{% set ns.a = "__globals__"[0:11] %}{{ x[ns.a] }}"#,
        ])
    func built(_ template: String) {
        #expect(kinds(template).contains("template.sandbox-escape"), "\(template)")
    }

    @Test(
        "attribute names the analyser cannot evaluate are never clean",
        arguments: [
            #"{{ x|attr(y) }}"#, #"{{ x|attr(lipsum|string|first) }}"#, #"{{ x[(cycler|string)[3] ~ "a"] }}"#,
            #"{% for c in "ab" %}{% set ns.s = ns.s ~ c %}{% endfor %}{{ x[ns.s] }}"#,
            #"{{ x|map("attr", y|string)|list }}"#, #"{{ cycler[bos_token][eos_token] }}"#,
            #"{{ x|groupby(unk_token) }}"#, #"{% macro m() %}a{% endmacro %}{{ x|attr(m() ~ "b") }}"#,
        ])
    func hidden(_ template: String) {
        let k = kinds(template)
        #expect(
            k.contains("template.dynamic-attribute") || k.contains("template.global-attribute"), "\(template): \(k)")
    }

    @Test(
        "values the template makes itself are followed: dicts, namespaces, lists, items, get",
        arguments: [
            #"{%- set D = dict(u="_", g="globals", a=lipsum) -%}{{ D.a[D.u + D.u + D.g + D.u + D.u] }}"#,
            #"{% set D = {'u': '_', 'g': 'globals'} %}{{ y[D.u * 2 ~ D.g ~ D.u * 2] }}"#,
            #"{% set D = dict(g='__glo' ~ 'bals__') %}{{ y[D.get('g')] }}{{ y[D.values()|first] }}"#,
            #"{% set D = dict([['u', '__glo' ~ 'bals__']]) %}{{ y[D.u] }}"#,
            #"{% set D = dict() %}{% do D.update(u='__glo' ~ 'bals__') %}{{ y[D.u] }}"#,
            #"{% set ns = namespace(u='_') %}{{ y[ns.u * 2 ~ 'globals' ~ ns.u * 2] }}"#,
            #"{% for k, v in dict(a='__glo' ~ 'bals__').items() %}{{ y[v] }}{% endfor %}"#,
            #"{% set D = dict(a=dict(b='_')) %}{{ y[D.a.b * 2 ~ 'globals' ~ D.a.b * 2] }}"#,
        ])
    func containers(_ template: String) {
        #expect(kinds(template).contains("template.sandbox-escape"), "\(template): \(kinds(template))")
    }

    @Test(
        "a global laundered through the template's values is still a global reached",
        arguments: [
            "{% set x = [lipsum] %}{{ x[0][k] }}", "{% for f in [lipsum] %}{{ f[k] }}{% endfor %}",
            "{% macro m(f) %}{{ f[k] }}{% endmacro %}{{ m(lipsum) }}",
            "{% macro m(f=lipsum) %}{{ f[k] }}{% endmacro %}{{ m() }}",
            "{% macro m(f) %}{{ caller(f) }}{% endmacro %}{% call(g) m(cycler) %}{{ g[k] }}{% endcall %}",
            "{% with f = lipsum %}{{ f[k] }}{% endwith %}", "{{ [lipsum]|first|attr(k) }}",
            "{% for a, b in dict(x=lipsum)|items %}{{ b[k] }}{% endfor %}",
            "{% set ns = namespace(f=lipsum) %}{{ ns.f[k] }}",
            "{% set ns = namespace() %}{% set ns.f = joiner %}{{ ns.f[k] }}",
            "{% for m in messages %}{{ loop.cycle(lipsum, lipsum)[k] }}{% endfor %}",
            "{% set f = lipsum if x else 1 %}{{ f[k] }}", "{{ (x|default(lipsum))[k] }}",
            "{% set a, b = lipsum, 1 %}{{ a[k] }}", "{{ ([lipsum]|sort|first)[k] }}",
            "{{ ([lipsum, 1][0:1]|first)[k] }}", "{% set D = dict(a=dict(b=lipsum)) %}{{ D.a.b[k] }}",
            "{% for kk, vv in dict(a=lipsum).items() %}{{ vv[k] }}{% endfor %}",
            "{% set D = dict() %}{% do D.update({'a': lipsum}) %}{{ D.a[k] }}",
            "{% set ns = namespace(f=cycler) %}{% if x %}{% set ns.f = 1 %}{% endif %}{{ ns.f[k] }}",
            "{{ (dict(a=lipsum)|items|list)[0][1][k] }}", "{{ ([lipsum]|select|first)[k] }}",
            "{{ ([lipsum] * 2)[0][k] }}", "{{ [lipsum]|map(attribute=k)|list }}", "{{ [cycler]|map('attr', k)|list }}",
            "{% set l = [] %}{% do l.append(lipsum) %}{{ l[0][k] }}", "{{ (lipsum, 1)|batch(1)|first|first|attr(k) }}",
            "{{ dict(**{'a': lipsum}).a[k] }}", "{{ ([1] + [lipsum])[1][k] }}",
        ])
    func laundered(_ template: String) {
        #expect(kinds(template).contains("template.global-attribute"), "\(template): \(kinds(template))")
    }

    @Test(
        "keys taken from the template's own values that the analyser cannot evaluate are built, never clean",
        arguments: [
            "{% set D = dict(u='_') %}{{ y[D.u + D.v] }}", "{{ y[[1]|tojson] }}", "{{ y[dict(a=1)[z]] }}",
            "{{ y[(['_', 'x']|select('string')|list)[0]] }}", "{{ y[['_', 'g']|reject('none')|join] }}",
            "{% set D = dict() %}{% do D.update(u='_') %}{{ y[D.u] }}", "{{ y[{'a': 'b'}.x] }}",
            "{% for m in messages %}{{ y[loop.cycle('_', '_') + loop.cycle('_', '_') + 'globals'] }}{% endfor %}",
            "{% macro u() %}_{% endmacro %}{{ y[u() + u()] }}", "{{ y[(dict(a=1)|tojson)[2]] }}",
        ])
    func builtKeys(_ template: String) {
        #expect(kinds(template).contains("template.dynamic-attribute"), "\(template): \(kinds(template))")
    }

    @Test("ordinary templates and ordinary look-ups are clean")
    func ordinary() {
        for t in [
            "{{ messages[0]['content'] }}", "{% for k, v in tool.items() if k != 'x' %}{{ k }}{% endfor %}",
            "{{ '}}' ~ '{{' }}{# {{ #}", "{% raw %}{{ x.__class__ }}{% endraw %}", "{{ m[loop.index0 - 1].role }}",
            "{{ x[y] }}", "{%- set ns = namespace(a=1) -%}{{ ns.a }}{%+ if x +%}y{% endif %}",
            "{{ {'a': {'b': 1}}['a'] }}", "{% macro f(a, b=2) %}{{ a }}{% endmacro %}{{ f(1) }}",
            "{{ x is divisibleby 3 }}{{ x is not none }}{{ -1 ** 2 }}", "{{ 0x1F + 0o7 + 0b1 + 1_000 + 1.5e3 }}",
            "{% set system = messages[0].content %}{% for _ in range(2) %}{{ system }}{% endfor %}{% set _x = 1 %}",
        ] {
            #expect(kinds(t).isEmpty, "\(t): \(kinds(t))")
        }
    }

    @Test("hostile shapes end with a bounded answer")
    func bounded() {
        #expect(kinds("{{ " + String(repeating: "(", count: 20_000) + " }}").contains("template.too-deep"))
        #expect(kinds("{{ " + String(repeating: "-", count: 20_000) + "1 }}").contains("template.too-deep"))
        #expect(kinds("{{ x" + String(repeating: "|f", count: 20_000) + " }}").isEmpty)
        #expect(kinds("{{ 'a").contains("template.malformed"))
        #expect(kinds("{# x").contains("template.malformed"))
        #expect(kinds("{% raw %}x").contains("template.malformed"))
        #expect(kinds("{{ '" + String(repeating: "a", count: 5000) + "' * 3 }}").isEmpty)
        #expect(kinds(String(repeating: "text ", count: 60_000) + "{{ x }}").contains("template.too-large"))
        #expect(kinds("{{ 'x' * 10**12 }}").contains("template.resource-exhaustion"))
        #expect(kinds("{{ range(10000000)|list }}").contains("template.resource-exhaustion"))
        // Values nested through variables stay bounded (no recursion the template controls).
        var chain = "{% set a = 'x' %}"
        for _ in 0..<20_000 { chain += "{% set a = [a] %}" }
        #expect(!kinds(chain + "{{ x[a] }}").contains("template.sandbox-escape"))
        // A replacement that would grow a string past the bound is not computed.
        let bomb = "{% set s = 'a' * 4000 %}" + String(repeating: "{{ s|replace('', s) }}", count: 2000)
        #expect(kinds(bomb).isEmpty)
        var big = "{% set a = 'a' %}"
        for _ in 0..<200 { big += "{% set a = a ~ a %}" }
        #expect(!kinds(big + "{{ x[a] }}").contains("template.sandbox-escape"))
        // Containers that share their parts: no question about a value walks it.
        var wide = "{% set a = 'x' %}"
        for _ in 0..<12 { wide += "{% set a = [" + Array(repeating: "a", count: 200).joined(separator: ",") + "] %}" }
        #expect(!kinds(wide + "{{ x[a] }}{{ a|first }}").contains("template.sandbox-escape"))
        // Every prefix of a hostile template gives an answer, never a crash.
        let t = Array(#"{% set u = "%c"|format(95) %}{{ (cycler|attr(u*2 ~ "init"))["os"].popen("x") }}"#.utf8)
        for n in 0...t.count { _ = JinjaTemplate.analyse(Array(t.prefix(n))) }
    }

    /// Long runs of underscores joined with many distinct suffixes: every computed string is searched for names, so
    /// the analysis is bounded by the bytes it searches and the work it does, and ends with `template.budget`.
    @Test("strings computed from long runs of underscores end in the work budget", arguments: [50, 3000, 60_000])
    func underscoreRuns(_ n: Int) {
        let run = String(repeating: "_", count: 4000)
        var t = "{% set u = '\(run)' %}"
        for i in 0..<n { t += "{{ x[u ~ 's\(i)'] }}{{ x|attr(u + 'a\(i)') }}" }
        let start = ContinuousClock.now
        let k = kinds(t)
        #expect(ContinuousClock.now - start < .seconds(20), "\(n) suffixes")
        #expect(k.contains("template.dunder-access"))
        #expect(k.contains("template.budget") == (n > 50), "\(n): \(k)")
        // Replacements and splits of long strings by long separators count their quadratic work.
        var r = "{% set u = '\(run)' %}"
        for i in 0..<n { r += "{{ u|replace('\(String(repeating: "_", count: 1000 + i % 1000))a', 'y') }}" }
        let start2 = ContinuousClock.now
        #expect(kinds(r).contains("template.budget"), "\(n) replacements")
        #expect(ContinuousClock.now - start2 < .seconds(20), "\(n) replacements")
    }
}
