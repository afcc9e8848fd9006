using System.Text.Json.Nodes;

namespace Cfn.Bench;

/// <summary>Latency summaries: nearest-rank percentiles of samples in milliseconds.</summary>
internal static class Stats
{
    public static double Percentile(IReadOnlyList<double> sorted, double q) =>
        sorted.Count == 0 ? double.NaN : sorted[(int)Math.Clamp(Math.Ceiling(q * sorted.Count) - 1, 0, sorted.Count - 1)];

    /// <summary><c>{n, p50_ms, p95_ms, p99_ms, max_ms}</c>.</summary>
    public static JsonObject Summary(IEnumerable<double> samples)
    {
        var sorted = samples.Order().ToList();
        return new JsonObject
        {
            ["n"] = sorted.Count,
            ["p50_ms"] = Round(Percentile(sorted, 0.50)),
            ["p95_ms"] = Round(Percentile(sorted, 0.95)),
            ["p99_ms"] = Round(Percentile(sorted, 0.99)),
            ["max_ms"] = Round(sorted.Count == 0 ? double.NaN : sorted[^1]),
        };
    }

    public static double Round(double value, int digits = 3) => double.IsNaN(value) ? 0 : Math.Round(value, digits);

    public static double Ms(long fromTimestamp, long toTimestamp) =>
        (toTimestamp - fromTimestamp) * 1000.0 / System.Diagnostics.Stopwatch.Frequency;

    public static double Get(JsonObject o, string field) => o[field]!.GetValue<double>();

    /// <summary>"p50 0.31 ms, p95 …, p99 …, max …" for the table.</summary>
    public static string Describe(JsonObject summary) =>
        $"p50 {F(Get(summary, "p50_ms"))} ms, p95 {F(Get(summary, "p95_ms"))} ms, p99 {F(Get(summary, "p99_ms"))} ms, max {F(Get(summary, "max_ms"))} ms";

    /// <summary>A figure with about three significant digits.</summary>
    public static string F(double v) => v switch
    {
        >= 100 => v.ToString("N0", System.Globalization.CultureInfo.InvariantCulture),
        >= 10 => v.ToString("0.0", System.Globalization.CultureInfo.InvariantCulture),
        >= 1 => v.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture),
        _ => v.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture),
    };
}
