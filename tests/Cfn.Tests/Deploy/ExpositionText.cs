using System.Globalization;
using System.Text;

namespace Cfn.Tests.Deploy;

/// <summary>One sample line of the Prometheus text format: its name (with a histogram's suffix), labels in order, value.</summary>
internal sealed record ExpositionSample(string Name, IReadOnlyList<KeyValuePair<string, string>> Labels, double Value)
{
    public string? Label(string name) => Labels.FirstOrDefault(l => l.Key == name).Value;

    /// <summary>The label names in the order printed, without <c>le</c> (a histogram bucket's bound).</summary>
    public IReadOnlyList<string> LabelNamesWithoutLe => [.. Labels.Select(l => l.Key).Where(k => k != "le")];

    /// <summary>The label set without <c>le</c>, as one string: the identity of a histogram's series.</summary>
    public string SeriesKey => string.Join(',', Labels.Where(l => l.Key != "le").Select(l => $"{l.Key}={l.Value}"));
}

/// <summary>A metric family: its <c># HELP</c> and <c># TYPE</c> and the samples printed under them.</summary>
internal sealed class ExpositionFamily(string name)
{
    public string Name { get; } = name;

    public string? Help { get; set; }

    public string? Type { get; set; }

    public List<ExpositionSample> Samples { get; } = [];
}

/// <summary>
/// A small parser of the Prometheus text exposition format 0.0.4 (what prometheus-net serves): <c># HELP</c>,
/// <c># TYPE</c>, and samples <c>name{label="value",…} value [timestamp]</c> with the format's escapes. It fails on
/// anything it does not understand, so a malformed scrape fails the test instead of passing unread.
/// </summary>
internal static class ExpositionText
{
    public static Dictionary<string, ExpositionFamily> Parse(string text)
    {
        var families = new Dictionary<string, ExpositionFamily>(StringComparer.Ordinal);
        ExpositionFamily Family(string name) => families.TryGetValue(name, out var f) ? f : families[name] = new ExpositionFamily(name);
        ExpositionFamily? current = null;
        var lineNumber = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNumber++;
            var line = raw.TrimEnd('\r');
            if (line.Length == 0)
            {
                continue;
            }

            if (line.StartsWith('#'))
            {
                var parts = line.Split(' ', 4);
                if (parts.Length >= 3 && parts[1] is "HELP" or "TYPE")
                {
                    current = Family(parts[2]);
                    if (parts[1] == "TYPE")
                    {
                        Assert.True(current.Type is null, $"line {lineNumber}: second # TYPE for {parts[2]}");
                        current.Type = parts.Length == 4 ? parts[3] : throw new FormatException($"line {lineNumber}: # TYPE without a type");
                    }
                    else
                    {
                        current.Help = parts.Length == 4 ? parts[3] : "";
                    }
                }

                continue;
            }

            var sample = ParseSample(line, lineNumber);
            // A sample belongs to the family announced last when its name is the family's or a histogram/summary suffix of it.
            var owner = current is not null && BelongsTo(sample.Name, current) ? current : Family(sample.Name);
            owner.Samples.Add(sample);
        }

        return families;
    }

    private static bool BelongsTo(string sampleName, ExpositionFamily family) =>
        sampleName == family.Name ||
        (family.Type is "histogram" or "summary" && (sampleName == family.Name + "_sum" || sampleName == family.Name + "_count")) ||
        (family.Type == "histogram" && sampleName == family.Name + "_bucket");

    private static ExpositionSample ParseSample(string line, int lineNumber)
    {
        var i = 0;
        while (i < line.Length && (char.IsAsciiLetterOrDigit(line[i]) || line[i] is '_' or ':'))
        {
            i++;
        }

        var name = line[..i];
        if (name.Length == 0)
        {
            throw new FormatException($"line {lineNumber}: no metric name: {line}");
        }

        var labels = new List<KeyValuePair<string, string>>();
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (line[i] != '}')
            {
                var start = i;
                while (line[i] != '=')
                {
                    i++;
                }

                var label = line[start..i];
                if (line[++i] != '"')
                {
                    throw new FormatException($"line {lineNumber}: label {label} value not quoted: {line}");
                }

                i++;
                var value = new StringBuilder();
                while (line[i] != '"')
                {
                    if (line[i] == '\\')
                    {
                        i++;
                        value.Append(line[i] switch { 'n' => '\n', '\\' => '\\', '"' => '"', _ => throw new FormatException($"line {lineNumber}: bad escape: {line}") });
                    }
                    else
                    {
                        value.Append(line[i]);
                    }

                    i++;
                }

                i++;
                Assert.DoesNotContain(labels, l => l.Key == label);
                labels.Add(new KeyValuePair<string, string>(label, value.ToString()));
                if (line[i] == ',')
                {
                    i++;
                }
            }

            i++;
        }

        var rest = line[i..].Trim().Split(' ');
        if (rest.Length is < 1 or > 2)
        {
            throw new FormatException($"line {lineNumber}: expected a value and an optional timestamp: {line}");
        }

        return new ExpositionSample(name, labels, ParseValue(rest[0], lineNumber));
    }

    public static double ParseValue(string text, int lineNumber = 0) => text switch
    {
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        "NaN" => double.NaN,
        _ => double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new FormatException($"line {lineNumber}: not a number: {text}"),
    };
}
