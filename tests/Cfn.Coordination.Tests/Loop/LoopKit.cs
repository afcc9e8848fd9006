using Cfn.Coordination.Loop;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Tests.Loop;

/// <summary>A swarm on database <see cref="DedicatedDatabase.LoopTests"/>, or another given (flushed): coordinators with loops, validators with workers.</summary>
internal sealed class SwarmWorld : IAsyncDisposable
{
    private readonly List<(CancellationTokenSource Stop, Task Run)> _running = [];

    private SwarmWorld(Harness h, DedicatedDatabase db)
    {
        H = h;
        Db = db;
        Queue = new WorkQueue(db.Redis, maxLength: 1000, fallbackPoll: TimeSpan.FromSeconds(2));
        Registry = new ValidatorRegistry(db.Redis);
        Performance = new ValidatorPerformance(db.Redis);
    }

    public Harness H { get; }

    public DedicatedDatabase Db { get; }

    public WorkQueue Queue { get; }

    public ValidatorRegistry Registry { get; }

    public ValidatorPerformance Performance { get; }

    public static async Task<SwarmWorld> CreateAsync(RedisServer server, Harness h, int database = DedicatedDatabase.LoopTests) =>
        new(h, await DedicatedDatabase.CreateAsync(server, h, database));

    public static ValidatorOptions FastValidators() => new()
    {
        DurationMedian = TimeSpan.FromMilliseconds(5),
        DurationP95 = TimeSpan.FromMilliseconds(20),
        FailureRate = 0,
    };

    public async Task<ValidatorWorker> StartValidatorAsync(string id, IValidation? validation = null)
    {
        var validator = await Db.StartAsync(H, id, "validators");
        var options = FastValidators();
        var worker = new ValidatorWorker(validator, validation ?? new BuiltInValidation(options), options, Performance, Registry);
        Run(worker.RunAsync);
        return worker;
    }

    public async Task<(Coordinator Coordinator, CoordinatorLoop Loop)> StartCoordinatorAsync(
        string id, string swarmId, LoopOptions options, bool run = true, HttpClient? external = null)
    {
        var coordinator = await Db.StartAsync(H, id, swarmId);
        var loop = new CoordinatorLoop(coordinator, Queue, options, Registry, Performance, external);
        if (run)
        {
            Run(loop.RunAsync);
        }

        return (coordinator, loop);
    }

    public (CancellationTokenSource Stop, Task Run) Run(Func<CancellationToken, Task> body)
    {
        var stop = new CancellationTokenSource();
        var entry = (stop, Task.Run(() => body(stop.Token)));
        _running.Add(entry);
        return entry;
    }

    /// <summary>The K10 item of <paramref name="workId"/> under any of <paramref name="coordinators"/>.</summary>
    public static async Task<WorkItem?> FindAsync(string workId, params Coordinator[] coordinators)
    {
        foreach (var coordinator in coordinators)
        {
            if (await coordinator.Work.GetAsync(workId) is { } item)
            {
                return item;
            }
        }

        return null;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (stop, run) in _running)
        {
            await stop.CancelAsync();
        }

        foreach (var (stop, run) in _running)
        {
            await run;
            stop.Dispose();
        }

        await Queue.DisposeAsync();
        await Db.DisposeAsync();
    }
}
