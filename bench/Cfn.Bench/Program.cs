// cfn benchmarks (issue 6): every row of the table beside the Redis round-trip floor (PING) measured in the same run.
// Usage: dotnet Cfn.Bench.dll --redis HOST:PORT [--db N] [--quick] [--alloc-types] [--out FILE] [--table FILE] [--rows a,b,…]
// [--pairs 100,…] (row c: only these pair counts, for comparing one change at one load)
// [--h-rate N] [--h-work-rate N] [--h-seconds S] (row h: signal cycles/s (200), work items/s (50), seconds of each
// sub-run (60, quick 2.5))
// `bash bench/run.sh [--quick]` starts a private redis-server (no persistence) and passes --redis. The database must be
// empty: the bench flushes it between rows. Full mode rewrites the table in docs/benchmarks.md; quick mode writes a
// table only when --table is given.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Cfn.Bench;
using Cfn.Bench.Rows;

IRow[] allRows = [new A_AckRelease(), new A2_AckPresent(), new B_FanIn(), new C_Throughput(), new D_Detection(), new E_DeathDetection(), new F_IdleCost(), new G_BatchCleanup(), new H_Retention(), new I_AgentRoundTrip(), new J_Dashboard(), new K_TsAckWake()];
string[] flags = ["--quick", "--alloc-types"];
string[] valued = ["--redis", "--out", "--table", "--db", "--rows", "--pairs", "--h-rate", "--h-work-rate", "--h-seconds"];
for (var i = 0; i < args.Length; i++)
{
    if (valued.Contains(args[i]) && i + 1 < args.Length)
    {
        i++;
    }
    else if (!flags.Contains(args[i]))
    {
        return Fail($"unknown or incomplete argument '{args[i]}' (expected --redis HOST:PORT, --db N, --quick, --alloc-types, --out FILE, --table FILE, --rows a,b,…, --pairs n,…, --h-rate N, --h-work-rate N, --h-seconds S)");
    }
}

var redisEndpoint = Arg("--redis");
if (string.IsNullOrWhiteSpace(redisEndpoint) || !redisEndpoint.Contains(':', StringComparison.Ordinal))
{
    return Fail("--redis HOST:PORT is required (bash bench/run.sh starts a private redis-server and passes it)");
}

var database = 0;
if (Arg("--db") is { } db && (!int.TryParse(db, NumberStyles.None, CultureInfo.InvariantCulture, out database) || database > 15))
{
    return Fail($"--db must be a database index from 0 to 15 (got '{db}')");
}

var quick = args.Contains("--quick");
var outPath = Arg("--out") ?? "bench-results.json";
var tablePath = Arg("--table") ?? (quick ? null : Path.Combine(Report.RepositoryRoot(), "docs", "benchmarks.md"));
var selected = Arg("--rows")?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
if (selected?.FirstOrDefault(k => allRows.All(r => r.Key != k)) is { } unknownRow)
{
    return Fail($"--rows: unknown row '{unknownRow}' (rows: {string.Join(',', allRows.Select(r => r.Key))})");
}

int[]? pairs = null;
if (Arg("--pairs") is { } pairList)
{
    var parts = pairList.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
    pairs = [.. parts.Select(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : 0)];
    if (pairs.Length == 0 || pairs.Contains(0))
    {
        return Fail($"--pairs must be positive whole numbers separated by commas (got '{pairList}')");
    }
}

double? hRate = null, hWorkRate = null, hSeconds = null;
foreach (var (name, set) in new (string, Action<double>)[] { ("--h-rate", v => hRate = v), ("--h-work-rate", v => hWorkRate = v), ("--h-seconds", v => hSeconds = v) })
{
    if (Arg(name) is { } text)
    {
        if (!double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) || value <= 0 || value > 100_000)
        {
            return Fail($"{name} must be a positive number (got '{text}')");
        }

        set(value);
    }
}

var rows = allRows.Where(r => selected is null || selected.Contains(r.Key)).ToList();
await using var ctx = await BenchContext.ConnectAsync(redisEndpoint, database, quick);
ctx.PairCounts = pairs;
ctx.RetentionRate = hRate;
ctx.RetentionWorkRate = hWorkRate;
ctx.RetentionSeconds = hSeconds;
var size = await ctx.Server.DatabaseSizeAsync(database);
if (size > 0)
{
    return Fail($"database {database} holds {size} keys; the bench flushes its database between rows, so it needs an empty one (bash bench/run.sh starts a private redis-server)");
}

// --alloc-types: after the run, the types that allocated most (sampled; see AllocationSampler).
using var allocations = args.Contains("--alloc-types") ? new AllocationSampler() : null;
allocations?.Start();
var total = Stopwatch.StartNew();
ctx.Floor = await Floor.MeasureAsync(ctx);
Console.WriteLine($"floor: PING p50 {ctx.Floor.PingP50Ms} ms, p99 {ctx.Floor.PingP99Ms} ms");
var result = Report.Header(quick, ctx.Floor, await ctx.RedisVersionAsync());
var lines = new List<TableLine>();
foreach (var row in rows)
{
    var clock = Stopwatch.StartNew();
    var rowResult = await row.RunAsync(ctx);
    result[row.Key] = rowResult.Json;
    lines.AddRange(rowResult.Lines);
    foreach (var line in rowResult.Lines)
    {
        Console.WriteLine($"{line.Row}: {line.Setup}: {line.Result}{(line.Met is { } met ? met ? "  [target met]" : "  [target MISSED]" : "")}");
    }

    Console.WriteLine($"   ({row.Key} took {clock.Elapsed.TotalSeconds:0.0} s)");
}

result["total_seconds"] = Math.Round(total.Elapsed.TotalSeconds, 1);
if (allocations is not null)
{
    allocations.Stop();
    Console.WriteLine("allocated bytes by type (sampled, whole run):");
    foreach (var (type, share) in allocations.Top(25))
    {
        Console.WriteLine($"  {share,6:P1}  {type}");
    }
}

await Report.WriteJsonAsync(outPath, result);
Console.WriteLine($"wrote {outPath} ({total.Elapsed.TotalSeconds:0.0} s)");
if (tablePath is not null)
{
    await Report.WriteTableAsync(tablePath, result, lines);
    Console.WriteLine($"rewrote the table in {tablePath}");
}

return 0;

string? Arg(string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

static int Fail(string message)
{
    Console.Error.WriteLine("cfn bench: " + message);
    return 2;
}
