using System.Collections;
using System.Text.Json;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Tests.Resilience;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Tests.Loop;

/// <summary>
/// SPEC §3.6: the work-loop variables, read by <see cref="LoopOptions.FromEnvironment"/>, change what a real
/// <see cref="CoordinatorLoop"/> does with real validators on database <see cref="DedicatedDatabase.LoopTests"/>.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class EnvironmentEffectTests(RedisServer server)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private static LoopOptions Read(params (string Name, string? Value)[] variables)
    {
        var env = new Hashtable();
        foreach (var (name, value) in variables)
        {
            env[name] = value;
        }

        return LoopOptions.FromEnvironment(env);
    }

    private static Task<bool> CompletedAsync(Coordinator coordinator, string workId) => EventuallyAsync(
        async () => await coordinator.Work.GetAsync(workId) is { Status: WorkStatus.Completed }, Patience, pollMs: 50);

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public async Task ValidatorsPerItem_AsksThatManyValidatorsPerItem(int k)
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        string[] validators = ["validator-0", "validator-1", "validator-2"];
        foreach (var id in validators)
        {
            await world.StartValidatorAsync(id);
        }

        // All three registered before the loop picks, so K is limited by the setting only.
        Assert.True(await EventuallyAsync(
            async () => (await world.Registry.LiveAsync(TimeSpan.FromSeconds(30))).Count == validators.Length, Patience));
        var (c1, _) = await world.StartCoordinatorAsync("coordinator-1", "swarm-k", Read(("VALIDATORS_PER_ITEM", $"{k}")));
        await world.Queue.EnqueueAsync("swarm-k", "item-k", JsonSerializer.SerializeToElement(new { k }));

        Assert.True(await CompletedAsync(c1, "item-k"), "item completed");
        var data = (await c1.Work.GetAsync("item-k"))!.Data!.Value;
        Assert.Equal("pass", data.GetProperty("outcome").GetString());
        var asked = data.GetProperty("verdicts").EnumerateArray().Select(v => v.GetProperty("validatorId").GetString()).ToList();
        Assert.Equal(k, asked.Distinct().Count());
        Assert.All(asked, a => Assert.Contains(a, validators));
        var wait = Assert.Single(RecoveryKit.Lines(h, "Waiting for ACKs", "coordinators="));
        var named = wait.Message.Split(' ').Single(t => t.StartsWith("coordinators=", StringComparison.Ordinal))["coordinators=".Length..].Split(',');
        Assert.Equal(k, named.Length);
    }

    [Theory]
    [InlineData(true, "1", 3)]
    [InlineData(true, "0", 0)]
    [InlineData(false, "1", 0)]
    public async Task ExternalApiUrlAndCallRate_RateOneCallsForEveryItemZeroOrNoUrlNever(bool setUrl, string rate, int calls)
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        await using var api = new LoopbackHttpServer((_, _) => Task.FromResult(204));
        await world.StartValidatorAsync("validator-ext");
        var url = api.BaseUrl + "/ext";
        var options = Read(("VALIDATORS_PER_ITEM", "1"), ("EXTERNAL_API_URL", setUrl ? url : null), ("EXTERNAL_CALL_RATE", rate));
        var (c1, _) = await world.StartCoordinatorAsync("coordinator-1", "swarm-x", options);
        string[] items = ["item-x0", "item-x1", "item-x2"];
        foreach (var item in items)
        {
            await world.Queue.EnqueueAsync("swarm-x", item, JsonSerializer.SerializeToElement(new { item }));
        }

        foreach (var item in items)
        {
            Assert.True(await CompletedAsync(c1, item), $"{item} completed");
        }

        Assert.Equal(calls, api.Hits);
        Assert.All(api.Requests, r => Assert.StartsWith("GET /ext ", r, StringComparison.Ordinal));
        Assert.Equal(calls, RecoveryKit.Lines(h, "Calling external API GET " + url).Count);
        foreach (var item in items)
        {
            var data = (await c1.Work.GetAsync(item))!.Data!.Value;
            if (calls > 0)
            {
                Assert.Equal(204, data.GetProperty("external").GetProperty("status").GetInt32());
            }
            else
            {
                Assert.False(data.TryGetProperty("external", out _), "no external call in the item's result");
            }
        }
    }

    [Fact]
    public async Task ExternalApiTimeoutMs_ServerNeverAnswers_TimeoutLineAndMetricAfterIt()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        // Reads the request, then never answers (until the server is disposed).
        await using var api = new LoopbackHttpServer(async (_, stopping) =>
        {
            await Task.Delay(Timeout.Infinite, stopping);
            return 200;
        });
        await world.StartValidatorAsync("validator-slow-api");
        var url = api.BaseUrl + "/slow";
        var options = Read(("VALIDATORS_PER_ITEM", "1"), ("EXTERNAL_API_URL", url), ("EXTERNAL_CALL_RATE", "1"), ("EXTERNAL_API_TIMEOUT_MS", "600"));
        var (c1, _) = await world.StartCoordinatorAsync("coordinator-1", "swarm-s", options);

        await world.Queue.EnqueueAsync("swarm-s", "item-s", JsonSerializer.SerializeToElement(new { s = 1 }));

        Assert.True(await CompletedAsync(c1, "item-s"), "the item is still validated and completed");
        Assert.Equal(1, api.Hits);
        var line = Assert.Single(RecoveryKit.Lines(h, "external API timeout", "timeoutMs=600 "));
        Assert.EndsWith("url=" + url, line.Message, StringComparison.Ordinal);
        var elapsed = long.Parse(line.Message.Split(' ').Single(t => t.StartsWith("elapsedMs=", StringComparison.Ordinal))["elapsedMs=".Length..],
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(elapsed, 550, 15_000); // about the configured time, not the 10 s default
        Assert.Equal(1, h.Metrics.TimeoutEvents.WithLabels(c1.Id, "external", "external").Value);
        var external = (await c1.Work.GetAsync("item-s"))!.Data!.Value.GetProperty("external");
        Assert.Contains("external API timeout after 600ms", external.GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("5000", false)]
    [InlineData("120000", true)]
    public async Task ValidatorStaleThresholdMs_ValidatorLastSeenLongerAgoIsNotPicked(string threshold, bool stalePicked)
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        // A stopped validator whose last registration was a minute ago (Redis clock), and a running one.
        await world.Registry.RegisterAsync("validator-stale");
        await world.Db.Database.SortedSetAddAsync(Keys.Validators, "validator-stale", await RedisKit.NowAsync(world.Db.Database) - 60_000);
        await world.StartValidatorAsync("validator-live");
        Assert.True(await EventuallyAsync(
            async () => (await world.Registry.LiveAsync(TimeSpan.FromSeconds(5))).Contains("validator-live"), Patience));
        var options = Read(("VALIDATORS_PER_ITEM", "2"), ("VALIDATOR_STALE_THRESHOLD_MS", threshold));
        var (c1, _) = await world.StartCoordinatorAsync("coordinator-1", "swarm-v", options);

        await world.Queue.EnqueueAsync("swarm-v", "item-v", JsonSerializer.SerializeToElement(new { v = 1 }));

        Assert.True(await EventuallyAsync(
            () => Task.FromResult(RecoveryKit.Lines(h, "Waiting for ACKs", "coordinators=").Count == 1), Patience));
        var wait = RecoveryKit.Lines(h, "Waiting for ACKs", "coordinators=")[0].Message;
        Assert.Contains("validator-live", wait, StringComparison.Ordinal);
        Assert.Equal(stalePicked, wait.Contains("validator-stale", StringComparison.Ordinal));
        if (!stalePicked)
        {
            // Only the fresh one was asked: the item passes on its verdict alone, fewer than VALIDATORS_PER_ITEM.
            Assert.True(await CompletedAsync(c1, "item-v"));
            var data = (await c1.Work.GetAsync("item-v"))!.Data!.Value;
            Assert.Equal("pass", data.GetProperty("outcome").GetString());
            Assert.Equal("validator-live", Assert.Single(data.GetProperty("verdicts").EnumerateArray()).GetProperty("validatorId").GetString());
            Assert.Single(RecoveryKit.Lines(h, "Fewer live validators than VALIDATORS_PER_ITEM", "live=1", "wanted=2"));
        }
    }
}
