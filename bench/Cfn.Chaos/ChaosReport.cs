using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Cfn.Chaos;

/// <summary>One broken invariant, with what shows it (log lines as <c>file:line: time LEVEL message</c>, Redis records).</summary>
public sealed record Violation(string Invariant, string Subject, string Detail, IReadOnlyList<string> Evidence);

/// <summary>What the checker found: the figures, the faults by kind, every violation with its evidence.</summary>
public sealed class ChaosReport
{
    /// <summary>The invariants, in report order (the issue's list).</summary>
    public static readonly IReadOnlyList<string> Invariants =
    [
        "completed_exactly_once",
        "no_double_ownership",
        "no_dead_state_left",
        "no_false_death",
        "waits_end_with_reason",
        "escalation_resumed",
        "no_crash",
        "faults_injected",
    ];

    public Dictionary<string, object?> Settings { get; } = [];

    /// <summary>Figures in print order.</summary>
    public List<KeyValuePair<string, object?>> Figures { get; } = [];

    public SortedDictionary<string, int> FaultsByKind { get; } = new(StringComparer.Ordinal);

    public List<Violation> Violations { get; } = [];

    /// <summary>Things seen that break no invariant but explain the figures.</summary>
    public List<string> Notes { get; } = [];

    public string LogDirectory { get; set; } = "";

    public bool Passed => Violations.Count == 0;

    public void Figure(string name, object? value) => Figures.Add(KeyValuePair.Create(name, value));

    public void Violate(string invariant, string subject, string detail, IEnumerable<string>? evidence = null) =>
        Violations.Add(new Violation(invariant, subject, detail, evidence?.ToList() ?? []));

    /// <summary>The report as a plain table, then the violations by invariant (at most <paramref name="perInvariant"/> each, evidence included).</summary>
    public string ToTable(int perInvariant = 15)
    {
        var text = new StringBuilder();
        text.AppendLine("chaos run: " + string.Join(", ", Settings.Select(s => $"{s.Key}={s.Value}")));
        var width = Math.Max(Figures.Select(f => f.Key.Length).DefaultIfEmpty(10).Max(), FaultsByKind.Keys.Select(k => k.Length + 9).DefaultIfEmpty(10).Max()) + 2;
        text.AppendLine($"{"figure".PadRight(width)}value");
        text.AppendLine(new string('-', width + 12));
        foreach (var (name, value) in Figures)
        {
            text.AppendLine($"{name.PadRight(width)}{Format(value)}");
        }

        foreach (var (kind, count) in FaultsByKind)
        {
            text.AppendLine($"{("fault: " + kind).PadRight(width)}{count}");
        }

        foreach (var invariant in Invariants)
        {
            text.AppendLine($"{("violations: " + invariant).PadRight(width)}{Violations.Count(v => v.Invariant == invariant)}");
        }

        text.AppendLine($"{"violations: total".PadRight(width)}{Violations.Count}");
        text.AppendLine($"logs: {LogDirectory}");
        foreach (var note in Notes)
        {
            text.AppendLine("note: " + note);
        }

        foreach (var group in Violations.GroupBy(v => v.Invariant))
        {
            text.AppendLine();
            text.AppendLine($"== {group.Key}: {group.Count()} violation(s)");
            foreach (var violation in group.Take(perInvariant))
            {
                text.AppendLine($"- {violation.Subject}: {violation.Detail}");
                foreach (var line in violation.Evidence.Take(8))
                {
                    text.AppendLine("    " + line);
                }
            }

            if (group.Count() > perInvariant)
            {
                text.AppendLine($"  … {group.Count() - perInvariant} more in the JSON report");
            }
        }

        return text.ToString();
    }

    private static string Format(object? value) => value switch
    {
        null => "-",
        double d => d.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture),
        IDictionary<string, int> map => string.Join(' ', map.Select(kv => $"{kv.Key}={kv.Value}")),
        _ => value.ToString() ?? "-",
    };

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
    };

    public string ToJson() => JsonSerializer.Serialize(new
    {
        passed = Passed,
        settings = Settings,
        figures = Figures.ToDictionary(f => f.Key, f => f.Value),
        faultsByKind = FaultsByKind,
        violationsByInvariant = Invariants.ToDictionary(i => i, i => Violations.Count(v => v.Invariant == i)),
        violations = Violations,
        notes = Notes,
        logDirectory = LogDirectory,
    }, JsonOptions);
}
