using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.Serialization;

namespace Cfn.Tests.Deploy;

/// <summary>
/// What the rules and Alertmanager tests share: the repository's files, the YAML in them as plain dictionaries and lists,
/// and the Prometheus tools run as real processes with their output kept for the failure message.
/// </summary>
internal static partial class RulesTooling
{
    public const string RulesFile = "deploy/prometheus/rules/blocking-coordination.yaml";
    public const string RuleTestsFolder = "deploy/prometheus/tests";
    public const string AlertmanagerFile = "deploy/alertmanager/alertmanager.yml";
    public const string GeneratedManifest = "deploy/kubernetes/monitoring/blocking-coordination-prometheusrule.yaml";
    public const string EarlyWarningManifest = "deploy/kubernetes/monitoring/heartbeat-early-warning.yaml";
    public const string RunbookFile = "docs/runbook.md";

    /// <summary>Where every runbook_url points: the placeholder host the rules file's header documents.</summary>
    public const string RunbookUrlBase = "https://runbooks.example.com/cfn/docs/runbook.md#";

    /// <summary>The folder holding cfn.slnx.</summary>
    public static string Root => Infrastructure.Repository.Root;

    public static string PathOf(string relative) => Infrastructure.Repository.PathOf(relative);

    public static string Read(string relative) => File.ReadAllText(PathOf(relative));

    /// <summary>A YAML document as nested <c>Dictionary&lt;object, object&gt;</c>, <c>List&lt;object&gt;</c> and strings.</summary>
    public static object LoadYaml(string relative) => ParseYaml(Read(relative));

    public static object ParseYaml(string text) =>
        new DeserializerBuilder().Build().Deserialize<object>(text) ?? throw new InvalidDataException("empty YAML document");

    public static string ToYaml(object value) => new SerializerBuilder().Build().Serialize(value);

    public static IDictionary<object, object> Map(object? node, string what) =>
        node as IDictionary<object, object> ?? throw new InvalidDataException($"{what}: expected a mapping");

    public static IList<object> List(object? node, string what) =>
        node as IList<object> ?? throw new InvalidDataException($"{what}: expected a sequence");

    public static string? Str(IDictionary<object, object> map, string key) =>
        map.TryGetValue(key, out var value) ? value as string : null;

    /// <summary>Every rule (recording and alerting) of a rules document, with the name of its group.</summary>
    public static List<(string Group, IDictionary<object, object> Rule)> Rules(object rulesDocument)
    {
        var result = new List<(string, IDictionary<object, object>)>();
        foreach (var groupNode in List(Map(rulesDocument, "rules file")["groups"], "groups"))
        {
            var group = Map(groupNode, "group");
            foreach (var rule in List(group["rules"], "rules"))
            {
                result.Add((Str(group, "name") ?? "", Map(rule, "rule")));
            }
        }

        return result;
    }

    public static List<IDictionary<object, object>> Alerts(object rulesDocument) =>
        [.. Rules(rulesDocument).Select(r => r.Rule).Where(r => r.ContainsKey("alert"))];

    public static IDictionary<object, object> Sub(IDictionary<object, object> map, string key) =>
        map.TryGetValue(key, out var value) ? Map(value, key) : new Dictionary<object, object>();

    /// <summary>Runs a program to its end (at most a minute) and returns its exit code, stdout + stderr, and stdout alone.</summary>
    public static async Task<(int ExitCode, string Output, string Stdout)> RunAsync(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Root,
        };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish within a minute");
        }

        return (process.ExitCode, (await stdout) + (await stderr), await stdout);
    }

    /// <summary>Asserts exit code 0, showing the command and everything it printed otherwise; returns stdout + stderr.</summary>
    public static async Task<string> RunOkAsync(string program, params string[] args) => (await RunToolOkAsync(program, args)).Output;

    /// <summary>As <see cref="RunOkAsync"/>, returning stdout on its own too.</summary>
    public static async Task<(string Output, string Stdout)> RunToolOkAsync(string program, params string[] args)
    {
        var (exitCode, output, stdout) = await RunAsync(program, args);
        Assert.True(exitCode == 0, $"{program} {string.Join(' ', args)} exited {exitCode}:\n{output}");
        return (output, stdout);
    }

    /// <summary>
    /// The anchors GitHub gives the headings of a Markdown file (outside code fences): lower case, punctuation dropped,
    /// spaces to hyphens, and -1, -2 … appended to repeats.
    /// </summary>
    public static HashSet<string> HeadingAnchors(string markdown)
    {
        var anchors = new HashSet<string>(StringComparer.Ordinal);
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        var inFence = false;
        foreach (var line in markdown.Split('\n'))
        {
            if (line.TrimStart().StartsWith("```", StringComparison.Ordinal))
            {
                inFence = !inFence;
                continue;
            }

            var heading = HeadingLine().Match(line);
            if (inFence || !heading.Success)
            {
                continue;
            }

            var slug = new StringBuilder();
            foreach (var c in heading.Groups[1].Value.Trim().ToLowerInvariant())
            {
                if (char.IsLetterOrDigit(c) || c is '-' or '_')
                {
                    slug.Append(c);
                }
                else if (c == ' ')
                {
                    slug.Append('-');
                }
            }

            var anchor = slug.ToString();
            var count = seen.GetValueOrDefault(anchor);
            seen[anchor] = count + 1;
            anchors.Add(count == 0 ? anchor : anchor + "-" + count.ToString(CultureInfo.InvariantCulture));
        }

        return anchors;
    }

    /// <summary>
    /// The metric names a PromQL expression reads: identifiers left once strings, label matchers, ranges and the label
    /// lists of by/without/on/ignoring/group_* are removed, that are not functions, keywords or parts of numbers.
    /// </summary>
    public static SortedSet<string> MetricNames(string expr)
    {
        var text = QuotedString().Replace(expr, "\"\"");
        text = LabelMatchers().Replace(text, "");
        text = RangeOrSubquery().Replace(text, "");
        text = LabelList().Replace(text, "");
        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (Match m in Identifier().Matches(text))
        {
            if (!Keywords.Contains(m.Groups[1].Value))
            {
                names.Add(m.Groups[1].Value);
            }
        }

        return names;
    }

    private static readonly HashSet<string> Keywords = new(StringComparer.OrdinalIgnoreCase)
    {
        "and", "or", "unless", "offset", "bool", "inf", "nan",
    };

    [GeneratedRegex(@"^#{1,6}\s+(.*?)\s*#*\s*$")]
    private static partial Regex HeadingLine();

    [GeneratedRegex("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'")]
    private static partial Regex QuotedString();

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex LabelMatchers();

    [GeneratedRegex(@"\[[^\]]*\]")]
    private static partial Regex RangeOrSubquery();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")]
    private static partial Regex LabelList();

    // An identifier not inside a number or duration (5m, 1e3) and not followed by "(" (a function call).
    [GeneratedRegex(@"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(?!\s*\()(?![\w:])")]
    private static partial Regex Identifier();
}
