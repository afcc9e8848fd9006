using System.Text.Json;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Work;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Work;

/// <summary>Fenced work items (SPEC K10, D6, §7.14 item 9): create, progress, complete, release, claim, restart fencing.</summary>
[Collection(RedisCollection.Name)]
public sealed class WorkItemStoreTests(RedisServer server)
{
    [Fact]
    public async Task CreateAsync_NewItem_StoredUnderK10WithFenceFields()
    {
        await using var h = Harness.Create(server, o => o.WorkTtlSeconds = 777);
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");

        var result = await c.Work.CreateAsync(workId, Data("""{"task":"review"}"""));

        Assert.Equal(WorkWriteOutcome.Ok, result.Outcome);
        Assert.True(result.Succeeded);
        var key = $"coordinator:work:{swarm}:{c.Id}:{workId}";
        var stored = await Probe.ReadJsonAsync(h.Database, key);
        var redisNow = await Probe.RedisNowMsAsync(h.Database);
        Assert.Equal(workId, stored.GetProperty("workId").GetString());
        Assert.Equal(swarm, stored.GetProperty("swarmId").GetString());
        Assert.Equal(c.Id, stored.GetProperty("assignedTo").GetString());
        Assert.Equal(c.Epoch, stored.GetProperty("ownerEpoch").GetInt64());
        Assert.Equal(1, stored.GetProperty("epoch").GetInt64());
        Assert.Equal("in-progress", stored.GetProperty("status").GetString());
        Assert.Equal("review", stored.GetProperty("data").GetProperty("task").GetString());
        Assert.True(stored.GetProperty("startedAt").TryGetInt64(out var startedAt));
        Assert.InRange(redisNow - startedAt, -2000, 2000);
        var ttl = await h.Database.KeyTimeToLiveAsync(key);
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 767, 777);
        Assert.NotNull(result.Item);
        Assert.Equal(c.Id, result.Item.AssignedTo);
        Assert.Equal(startedAt, result.Item.StartedAt);
    }

    [Fact]
    public async Task CreateAsync_WorkIdRecordedUnderAnotherCoordinator_RefusedNamingTheOwner_IndexesKept()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var first = await h.StartAsync(swarmId: swarm);
        var second = await h.StartAsync(swarmId: swarm);
        var created = await first.Work.CreateAsync("shared-item");
        Assert.Equal(WorkWriteOutcome.Ok, created.Outcome);
        Assert.Equal(first.Id, (string?)await h.Database.StringGetAsync(Keys.WorkOwner(swarm, "shared-item")));
        Assert.Equal(["shared-item"], (await h.Database.SetMembersAsync(Keys.Owned(swarm, first.Id))).Select(v => (string)v!));

        // One work ID has one record at a time: the second coordinator's create is refused and nothing of it is written.
        var refused = await second.Work.CreateAsync("shared-item");
        Assert.Equal(WorkWriteOutcome.OwnedElsewhere, refused.Outcome);
        Assert.Equal(first.Id, refused.Owner);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Work(swarm, second.Id, "shared-item")));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Owned(swarm, second.Id)));

        // Once released it is claimed, and the marker and indexes follow the record.
        Assert.True((await first.Work.ReleaseAsync(created.Item!)).Succeeded);
        Assert.Empty(await h.Database.SetMembersAsync(Keys.Owned(swarm, first.Id)));
        var claimed = await second.Work.ClaimAsync(first.Id, "shared-item");
        Assert.Equal(WorkWriteOutcome.Ok, claimed.Outcome);
        Assert.Equal(second.Id, (string?)await h.Database.StringGetAsync(Keys.WorkOwner(swarm, "shared-item")));
        Assert.Equal(["shared-item"], (await h.Database.SetMembersAsync(Keys.Owned(swarm, second.Id))).Select(v => (string)v!));
        Assert.True((await second.Work.CompleteAsync(claimed.Item!)).Succeeded);
        Assert.Empty(await h.Database.SetMembersAsync(Keys.Owned(swarm, second.Id)));
    }

    [Fact]
    public async Task GetAsync_CreatedItem_RoundTrips()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var workId = TestIds.New("work");
        await c.Work.CreateAsync(workId);

        var item = await c.Work.GetAsync(workId);

        Assert.NotNull(item);
        Assert.Equal(workId, item.WorkId);
        Assert.Equal(WorkStatus.InProgress, item.Status);
        Assert.Null(await c.Work.GetAsync(TestIds.New("absent")));
    }

    [Fact]
    public async Task ProgressThenComplete_UsingReturnedItems_Succeed()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");
        var created = await c.Work.CreateAsync(workId, Data("""{"step":0}"""));

        var progressed = await c.Work.ProgressAsync(created.Item!, Data("""{"step":1}"""));
        Assert.Equal(WorkWriteOutcome.Ok, progressed.Outcome);
        var progressedAgain = await c.Work.ProgressAsync(progressed.Item!, Data("""{"step":2}"""));
        Assert.Equal(WorkWriteOutcome.Ok, progressedAgain.Outcome);
        var completed = await c.Work.CompleteAsync(progressedAgain.Item!, Data("""{"result":"done"}"""));

        Assert.Equal(WorkWriteOutcome.Ok, completed.Outcome);
        var stored = await Probe.ReadJsonAsync(h.Database, $"coordinator:work:{swarm}:{c.Id}:{workId}");
        Assert.Equal("completed", stored.GetProperty("status").GetString());
        Assert.Equal("done", stored.GetProperty("data").GetProperty("result").GetString());
        Assert.Equal(1, stored.GetProperty("epoch").GetInt64());
        Assert.Equal(created.Item!.StartedAt, stored.GetProperty("startedAt").GetInt64());
        Assert.True(stored.GetProperty("updatedAt").GetInt64() >= created.Item.UpdatedAt);
    }

    [Fact]
    public async Task ProgressAsync_StaleItemCopy_Conflict()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var workId = TestIds.New("work");
        var created = await c.Work.CreateAsync(workId, Data("""{"step":0}"""));
        var progressed = await c.Work.ProgressAsync(created.Item!, Data("""{"step":1}"""));
        Assert.Equal(WorkWriteOutcome.Ok, progressed.Outcome);

        var stale = await c.Work.ProgressAsync(created.Item!, Data("""{"step":2}"""));

        Assert.Equal(WorkWriteOutcome.Conflict, stale.Outcome);
        Assert.Equal(1, h.Metrics.WorkWritesRefused.WithLabels(c.Id, "conflict").Value);
        var stored = await c.Work.GetAsync(workId);
        Assert.Equal(1, stored!.Data!.Value.GetProperty("step").GetInt32());
        Assert.False(c.IsSuperseded);
    }

    [Fact]
    public async Task ProgressAsync_AfterCompletion_AlreadyCompleted()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var workId = TestIds.New("work");
        var created = await c.Work.CreateAsync(workId);
        var completed = await c.Work.CompleteAsync(created.Item!, Data("""{"result":1}"""));
        Assert.Equal(WorkWriteOutcome.Ok, completed.Outcome);

        var withCompletedCopy = await c.Work.ProgressAsync(completed.Item!, Data("""{"result":2}"""));
        var withOlderCopy = await c.Work.ProgressAsync(created.Item!, Data("""{"result":3}"""));
        var completeAgain = await c.Work.CompleteAsync(created.Item!, Data("""{"result":4}"""));
        var release = await c.Work.ReleaseAsync(completed.Item!);

        Assert.Equal(WorkWriteOutcome.AlreadyCompleted, withCompletedCopy.Outcome);
        Assert.Equal(WorkWriteOutcome.AlreadyCompleted, withOlderCopy.Outcome);
        Assert.Equal(WorkWriteOutcome.AlreadyCompleted, completeAgain.Outcome);
        Assert.Equal(WorkWriteOutcome.AlreadyCompleted, release.Outcome);
        Assert.Equal(4, h.Metrics.WorkWritesRefused.WithLabels(c.Id, "completed").Value);
        var stored = await c.Work.GetAsync(workId);
        Assert.Equal(WorkStatus.Completed, stored!.Status);
        Assert.Equal(1, stored.Data!.Value.GetProperty("result").GetInt32());
    }

    [Fact]
    public async Task CreateAsync_Twice_AlreadyExists()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var workId = TestIds.New("work");
        var first = await c.Work.CreateAsync(workId, Data("""{"v":1}"""));

        var second = await c.Work.CreateAsync(workId, Data("""{"v":2}"""));

        Assert.Equal(WorkWriteOutcome.Ok, first.Outcome);
        Assert.Equal(WorkWriteOutcome.AlreadyExists, second.Outcome);
        Assert.Equal(1, h.Metrics.WorkWritesRefused.WithLabels(c.Id, "exists").Value);
        Assert.Equal(1, (await c.Work.GetAsync(workId))!.Data!.Value.GetProperty("v").GetInt32());
    }

    [Fact]
    public async Task ProgressAsync_AfterRestartWithSameId_FencedAndSuperseded()
    {
        await using var h = Harness.Create(server);
        var id = TestIds.New("coord");
        var swarm = TestIds.New("swarm");
        var first = await h.StartAsync(id, swarm);
        var workId = TestIds.New("work");
        var created = await first.Work.CreateAsync(workId, Data("""{"step":0}"""));
        var before = (string?)await h.Database.StringGetAsync($"coordinator:work:{swarm}:{id}:{workId}");

        var restarted = await h.StartAsync(id, swarm);
        var write = await first.Work.ProgressAsync(created.Item!, Data("""{"step":1}"""));

        Assert.Equal(WorkWriteOutcome.Fenced, write.Outcome);
        Assert.True(first.IsSuperseded);
        Assert.False(restarted.IsSuperseded);
        Assert.Equal(1, h.Metrics.WorkWritesRefused.WithLabels(id, "fenced").Value);
        Assert.Equal(before, (string?)await h.Database.StringGetAsync($"coordinator:work:{swarm}:{id}:{workId}"));
        // Once superseded, the old instance cannot create new items either.
        var create = await first.Work.CreateAsync(TestIds.New("work"));
        Assert.NotEqual(WorkWriteOutcome.Ok, create.Outcome);
    }

    [Fact]
    public async Task AdoptAsync_AfterRestartWithSameId_NewInstanceContinuesAndOldIsFenced()
    {
        await using var h = Harness.Create(server);
        var id = TestIds.New("coord");
        var swarm = TestIds.New("swarm");
        var first = await h.StartAsync(id, swarm);
        var workId = TestIds.New("work");
        var created = await first.Work.CreateAsync(workId, Data("""{"step":0}"""));

        var restarted = await h.StartAsync(id, swarm);
        var adopted = await restarted.Work.AdoptAsync(workId);

        Assert.Equal(WorkWriteOutcome.Ok, adopted.Outcome);
        Assert.Equal(restarted.Epoch, adopted.Item!.OwnerEpoch);
        Assert.Equal(created.Item!.Epoch + 1, adopted.Item.Epoch);
        Assert.Equal(0, adopted.Item.Data!.Value.GetProperty("step").GetInt32());
        var progressed = await restarted.Work.ProgressAsync(adopted.Item, Data("""{"step":1}"""));
        Assert.Equal(WorkWriteOutcome.Ok, progressed.Outcome);
        Assert.NotEqual(WorkWriteOutcome.Ok, (await first.Work.ProgressAsync(created.Item, Data("""{"step":9}"""))).Outcome);
        Assert.Equal(1, (await restarted.Work.GetAsync(workId))!.Data!.Value.GetProperty("step").GetInt32());
    }

    [Fact]
    public async Task AdoptAsync_AnotherCoordinatorsItemOrCompleted_Refused()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var owner = await h.StartAsync(swarmId: swarm);
        var other = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");
        var created = await owner.Work.CreateAsync(workId);

        Assert.Equal(WorkWriteOutcome.NotFound, (await other.Work.AdoptAsync(workId)).Outcome);
        await owner.Work.CompleteAsync(created.Item!);
        Assert.Equal(WorkWriteOutcome.AlreadyCompleted, (await owner.Work.AdoptAsync(workId)).Outcome);
    }

    [Fact]
    public async Task ClaimAsync_ReleasedItem_MovesToClaimerWithNextEpoch()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var owner = await h.StartAsync(swarmId: swarm);
        var claimer = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");
        var created = await owner.Work.CreateAsync(workId, Data("""{"task":"t"}"""));
        var released = await owner.Work.ReleaseAsync(created.Item!);
        Assert.Equal(WorkWriteOutcome.Ok, released.Outcome);
        Assert.Equal(WorkStatus.Released, released.Item!.Status);

        var claim = await claimer.Work.ClaimAsync(owner.Id, workId);

        Assert.Equal(WorkWriteOutcome.Ok, claim.Outcome);
        var oldKey = $"coordinator:work:{swarm}:{owner.Id}:{workId}";
        var newKey = $"coordinator:work:{swarm}:{claimer.Id}:{workId}";
        Assert.False(await h.Database.KeyExistsAsync(oldKey));
        var stored = await Probe.ReadJsonAsync(h.Database, newKey);
        Assert.Equal(claimer.Id, stored.GetProperty("assignedTo").GetString());
        Assert.Equal(claimer.Epoch, stored.GetProperty("ownerEpoch").GetInt64());
        Assert.Equal(2, stored.GetProperty("epoch").GetInt64());
        Assert.Equal(owner.Id, stored.GetProperty("transferredFrom").GetString());
        Assert.True(stored.GetProperty("transferredAt").TryGetInt64(out var transferredAt));
        Assert.InRange(await Probe.RedisNowMsAsync(h.Database) - transferredAt, -2000, 2000);
        Assert.Equal("in-progress", stored.GetProperty("status").GetString());
        Assert.Equal("t", stored.GetProperty("data").GetProperty("task").GetString());
        Assert.Equal(created.Item!.StartedAt, stored.GetProperty("startedAt").GetInt64());

        // The claimer can carry on with the returned item.
        var progressed = await claimer.Work.ProgressAsync(claim.Item!, Data("""{"task":"t2"}"""));
        Assert.Equal(WorkWriteOutcome.Ok, progressed.Outcome);
    }

    [Fact]
    public async Task ClaimAsync_UnreleasedItem_NotReleased()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var owner = await h.StartAsync(swarmId: swarm);
        var claimer = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");
        await owner.Work.CreateAsync(workId);

        var claim = await claimer.Work.ClaimAsync(owner.Id, workId);

        Assert.Equal(WorkWriteOutcome.NotReleased, claim.Outcome);
        Assert.Equal(1, h.Metrics.WorkWritesRefused.WithLabels(claimer.Id, "not_released").Value);
        Assert.True(await h.Database.KeyExistsAsync($"coordinator:work:{swarm}:{owner.Id}:{workId}"));
        Assert.False(await h.Database.KeyExistsAsync($"coordinator:work:{swarm}:{claimer.Id}:{workId}"));
    }

    [Fact]
    public async Task ClaimAsync_CompletedOrMissingItem_Refused()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var owner = await h.StartAsync(swarmId: swarm);
        var claimer = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");
        var created = await owner.Work.CreateAsync(workId);
        await owner.Work.CompleteAsync(created.Item!);

        Assert.Equal(WorkWriteOutcome.AlreadyCompleted, (await claimer.Work.ClaimAsync(owner.Id, workId)).Outcome);
        Assert.Equal(WorkWriteOutcome.NotFound, (await claimer.Work.ClaimAsync(owner.Id, TestIds.New("absent"))).Outcome);
    }

    [Fact]
    public async Task OldOwnerWrite_AfterClaim_RefusedAndClaimersItemUntouched()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var owner = await h.StartAsync(swarmId: swarm);
        var claimer = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");
        var created = await owner.Work.CreateAsync(workId, Data("""{"v":0}"""));
        var released = await owner.Work.ReleaseAsync(created.Item!);
        var claim = await claimer.Work.ClaimAsync(owner.Id, workId);
        Assert.Equal(WorkWriteOutcome.Ok, claim.Outcome);
        var newKey = $"coordinator:work:{swarm}:{claimer.Id}:{workId}";
        var claimedJson = (string?)await h.Database.StringGetAsync(newKey);

        var results = new[]
        {
            await owner.Work.ProgressAsync(released.Item!, Data("""{"v":1}""")),
            await owner.Work.ProgressAsync(created.Item!, Data("""{"v":2}""")),
            await owner.Work.CompleteAsync(released.Item!, Data("""{"v":3}""")),
            await owner.Work.ReleaseAsync(created.Item!),
            await owner.Work.ProgressAsync(claim.Item!, Data("""{"v":4}""")), // even holding the claimer's copy
        };

        Assert.All(results, r => Assert.Contains(r.Outcome, new[] { WorkWriteOutcome.NotOwner, WorkWriteOutcome.NotFound }));
        Assert.Equal(claimedJson, (string?)await h.Database.StringGetAsync(newKey));
        Assert.False(await h.Database.KeyExistsAsync($"coordinator:work:{swarm}:{owner.Id}:{workId}"));
    }

    [Fact]
    public async Task ClaimAsync_TwoClaimersAtOnce_ExactlyOneWins()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var owner = await h.StartAsync(swarmId: swarm);
        var a = await h.StartAsync(swarmId: swarm);
        var b = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");
        var created = await owner.Work.CreateAsync(workId);
        await owner.Work.ReleaseAsync(created.Item!);

        var claims = await Task.WhenAll(a.Work.ClaimAsync(owner.Id, workId), b.Work.ClaimAsync(owner.Id, workId));

        Assert.Single(claims, r => r.Outcome == WorkWriteOutcome.Ok);
        var existing = new[]
        {
            await h.Database.KeyExistsAsync($"coordinator:work:{swarm}:{a.Id}:{workId}"),
            await h.Database.KeyExistsAsync($"coordinator:work:{swarm}:{b.Id}:{workId}"),
        };
        Assert.Single(existing, e => e);
    }

    [Fact]
    public async Task ProgressAsync_ShortRemainingTtl_TtlKeptNotReset()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");
        var key = $"coordinator:work:{swarm}:{c.Id}:{workId}";
        var created = await c.Work.CreateAsync(workId);
        Assert.True(await h.Database.KeyExpireAsync(key, TimeSpan.FromMilliseconds(100_000)));

        var progressed = await c.Work.ProgressAsync(created.Item!, Data("""{"step":1}"""));

        Assert.Equal(WorkWriteOutcome.Ok, progressed.Outcome);
        var pttl = (long)await h.Database.ExecuteAsync("PTTL", key);
        Assert.InRange(pttl, 1, 100_000);
        Assert.True(pttl > 80_000, $"PTTL {pttl}");
    }

    [Fact]
    public async Task ClaimAsync_ShortRemainingTtl_TtlCarriedToNewKey()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var owner = await h.StartAsync(swarmId: swarm);
        var claimer = await h.StartAsync(swarmId: swarm);
        var workId = TestIds.New("work");
        var created = await owner.Work.CreateAsync(workId);
        var released = await owner.Work.ReleaseAsync(created.Item!);
        Assert.Equal(WorkWriteOutcome.Ok, released.Outcome);
        Assert.True(await h.Database.KeyExpireAsync($"coordinator:work:{swarm}:{owner.Id}:{workId}", TimeSpan.FromMilliseconds(100_000)));

        var claim = await claimer.Work.ClaimAsync(owner.Id, workId);

        Assert.Equal(WorkWriteOutcome.Ok, claim.Outcome);
        var pttl = (long)await h.Database.ExecuteAsync("PTTL", $"coordinator:work:{swarm}:{claimer.Id}:{workId}");
        Assert.InRange(pttl, 80_000, 100_000);
    }

    [Theory]
    [InlineData("""{"note":"__NOW__"}""")]
    [InlineData("""{"n":-9223372036854775808}""")]
    [InlineData("""["__NOW__",-9223372036854775808]""")]
    public async Task CreateAsync_DataLooksLikeTimePlaceholder_StoredVerbatim(string json)
    {
        // Application data is opaque: the Redis-clock placeholder mechanism must only touch the item's own time fields.
        await using var h = Harness.Create(server);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var workId = TestIds.New("work");

        var created = await c.Work.CreateAsync(workId, Data(json));

        Assert.Equal(WorkWriteOutcome.Ok, created.Outcome);
        var stored = await c.Work.GetAsync(workId);
        Assert.Equal(json, stored!.Data!.Value.GetRawText());
    }

    private static JsonElement Data(string json)
    {
        using var document = JsonDocument.Parse(json);
        return document.RootElement.Clone();
    }

}
