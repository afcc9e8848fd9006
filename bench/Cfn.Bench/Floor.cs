using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Cfn.Bench;

/// <summary>The Redis round-trip floor: sequential PINGs on the bench's own connection, measured in the same run.</summary>
internal sealed record Floor(double PingP50Ms, double PingP99Ms, int Samples)
{
    public static async Task<Floor> MeasureAsync(BenchContext ctx)
    {
        var samples = new List<double>();
        var count = ctx.Quick ? 300 : 2000;
        for (var i = 0; i < count + 50; i++)
        {
            var start = Stopwatch.GetTimestamp();
            await ctx.Database.PingAsync();
            if (i >= 50)
            {
                samples.Add(Stats.Ms(start, Stopwatch.GetTimestamp())); // the first 50 warm the connection up
            }
        }

        samples.Sort();
        return new Floor(Stats.Round(Stats.Percentile(samples, 0.5), 4), Stats.Round(Stats.Percentile(samples, 0.99), 4), samples.Count);
    }

    public JsonObject ToJson() => new() { ["ping_p50_ms"] = PingP50Ms, ["ping_p99_ms"] = PingP99Ms, ["samples"] = Samples };

    /// <summary>"×N p50 / ×M p99" of a latency summary against the floor.</summary>
    public string Multiple(JsonObject summary) =>
        $"×{Stats.F(Stats.Get(summary, "p50_ms") / PingP50Ms)} (p50) / ×{Stats.F(Stats.Get(summary, "p99_ms") / PingP99Ms)} (p99)";
}
