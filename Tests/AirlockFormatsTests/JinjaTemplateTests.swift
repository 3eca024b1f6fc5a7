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
        // Every prefix of a hostile template gives an answer, never a crash.
        let t = Array(#"{% set u = "%c"|format(95) %}{{ (cycler|attr(u*2 ~ "init"))["os"].popen("x") }}"#.utf8)
        for n in 0...t.count { _ = JinjaTemplate.analyse(Array(t.prefix(n))) }
    }
}
